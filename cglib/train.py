"""Training CartoonGAN: the initialization phase, then the adversarial phase; resumable, on one
process or many.

One :class:`TrainConfig` dataclass holds every setting; its defaults are the authors' (see
PAPER.md), and :data:`PRESETS` names three profiles: ``paper`` (the defaults), ``demo`` (a
smaller model on smaller images, so that a CPU shows real learning in minutes, like nanoGPT's
CPU model) and ``smoke`` (seconds; proves the code path). The command line
``python -m cglib train`` is generated from the dataclass.

The :class:`Trainer` is the loop around the paper's two steps (:mod:`cglib.steps`): phases and
epochs, the learning-rate schedule, the data streams (:mod:`cglib.batches`), checkpoints and
exact resumption (every random choice is keyed by the step or saved), the run folder
(:mod:`cglib.runs`) with its metrics, sample grids, measures and exported generators, and
several processes under torchrun (:mod:`cglib.distributed`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cglib import (
    batches,
    checkpoints,
    data,
    distributed,
    env,
    files,
    inference,
    losses,
    metrics,
    models,
    pretrained,
    runs,
    steps,
    vgg,
)

PHASES = ("init", "adversarial")


@dataclass
class TrainConfig:
    """Every training setting. Defaults: the authors' code (PAPER.md), except where noted."""

    # data and output
    data: str = ""  # data set root: photos/, photos_test/, cartoons/, cartoons_smoothed/
    out: str = ""  # run folder: checkpoints, metrics, samples, the exported generators
    image_size: int = 256
    batch_size: int = 8  # the global batch: split over the processes of a torchrun job
    workers: int = 2  # data-loading processes per domain
    in_memory: bool = False  # hold each domain in memory as uint8 (fast; needs RAM)
    # models (paper: G width 64 with 8 residual blocks, D width 32)
    generator_width: int = 64
    residual_blocks: int = 8
    discriminator_width: int = 32
    norm: str = "instance"  # "instance" (the authors' code) or "batch" (the paper's text)
    # fine-tuning: start G from a released style (hayao, hosoda, paprika, shinkai) or a
    # generator file instead of N(0, 0.02); the width, blocks and norm are then the file's
    init_from: str = ""
    # initialization phase: G alone on the content loss
    init_epochs: int = 10  # at a constant learning rate ...
    init_decay_epochs: int = 10  # ... then decaying linearly to 0
    init_lr: float = 2e-4
    # adversarial phase: both networks
    epochs: int = 100
    decay_epochs: int = 100
    lr: float = 1e-5
    beta1: float = 0.5
    beta2: float = 0.999
    # the objective
    adversarial_loss: str = "lsgan"  # "lsgan" (the authors' code) or "log" (the paper)
    edge_loss: bool = True  # the edge-smoothed cartoons as fakes for D (the paper's key term)
    content_loss: str = "l1"  # "l1" (the paper) or "l2"
    content_weight: float = 10.0
    # "imagenet" (the paper; an error when they cannot be had), "auto" (imagenet, else random
    # filters with a warning) or "random" (not the paper's content loss)
    vgg_weights: str = "imagenet"
    # the VGG19 layer compared: conv4_4 (the paper), another, or "auto": conv4_4 with ImageNet
    # weights, RANDOM_FILTERS_LAYER with random filters (whose conv4_4 holds little of a photo)
    content_layer: str = "conv4_4"
    pool_size: int = 50
    zero_biases: bool = True  # reset convolution biases before every step, as the authors did
    flip: bool = True  # random horizontal flips
    # speed
    device: str = "auto"
    precision: str = "auto"  # see pick_precision
    channels_last: bool = False
    compile: bool = False
    # bookkeeping
    seed: int = 0
    steps_per_epoch: int = 0  # 0: one pass over the photos
    checkpoint_every: int = 500  # steps; a checkpoint is also written at every epoch end
    keep_checkpoints: int = 3
    log_every: int = 10  # steps between metric lines
    samples: int = 8  # held-out photos drawn through G at every epoch end, and measured
    export_every: int = 10  # epochs between the generators kept in generators/
    max_nonfinite: int = 10  # skipped steps with NaN or infinite losses before stopping
    description: str = ""  # free text, shown with the run (e.g. "demo: smaller model")
    # the released style the held-out photos' outputs are compared with at every epoch end
    # (PSNR and SSIM to its outputs); "": the style that drew the data set's cartoons, as its
    # manifest records it (the demo set), else none
    reference_style: str = ""

    def __post_init__(self) -> None:
        _check_choices(self)
        _check_numbers(self)

    def phase_epochs(self, phase: str) -> tuple[int, int]:
        """(constant, decaying) epochs of ``phase``."""
        if phase == "init":
            return self.init_epochs, self.init_decay_epochs
        return self.epochs, self.decay_epochs


#: The content layer with random VGG filters when ``content_layer="auto"``: an early layer
#: still holds the photo's layout (see notebook 04).
RANDOM_FILTERS_LAYER = "conv2_2"

_CHOICES = {"norm": models.NORMS, "adversarial_loss": losses.ADVERSARIAL_KINDS,
            "content_loss": losses.CONTENT_KINDS,
            "vgg_weights": ("auto", *vgg.WEIGHT_CHOICES),
            "content_layer": ("auto", *vgg.CONV_LAYERS), "precision": env.PRECISIONS,
            "reference_style": ("", *pretrained.STYLES)}


def _check_choices(config: TrainConfig) -> None:
    for name, allowed in _CHOICES.items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"{name}={getattr(config, name)!r} is not one of "
                             f"{', '.join(map(repr, allowed))}")


def _check_numbers(config: TrainConfig) -> None:
    """Every number in range, so that a wrong value fails before any work (and never gets
    saved into a checkpoint)."""
    for item in fields(config):
        value = getattr(config, item.name)
        if item.type == "float" and not math.isfinite(value):
            raise ValueError(f"{item.name}={value} must be a finite number")
    for name in ("init_lr", "lr"):
        if getattr(config, name) <= 0:
            raise ValueError(f"{name}={getattr(config, name)} must be positive (the paper: "
                             "2e-4 for init_lr, 1e-5 for lr)")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(config, name) < 1:
            raise ValueError(f"{name}={getattr(config, name)} must be in [0, 1) (Adam's decay "
                             "rates; the authors: 0.5 and 0.999)")
    if config.content_weight < 0:
        raise ValueError(f"content_weight={config.content_weight} must not be negative")
    if config.image_size % 4 or config.image_size < 16:
        raise ValueError(f"image_size={config.image_size}: use a multiple of 4, at least 16")
    for name in ("batch_size", "generator_width", "discriminator_width", "keep_checkpoints",
                 "log_every", "checkpoint_every", "export_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}={getattr(config, name)} must be at least 1")
    for name in ("init_epochs", "init_decay_epochs", "epochs", "decay_epochs", "workers",
                 "pool_size", "steps_per_epoch", "samples", "residual_blocks", "max_nonfinite"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name}={getattr(config, name)} must not be negative")


#: Named presets. ``demo`` shrinks the model (G width 32 with 4 residual blocks, D width 16),
#: the images (96x96) and the schedule so that a 2-core CPU trains it in minutes: a smaller
#: real run, not the paper's model; learning rates and losses stay the paper's. ``smoke`` is
#: smaller still and learns nothing; it exercises every path.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"description": "paper: the authors' settings, full model, 256x256"},
    "demo": {
        "image_size": 96, "batch_size": 4, "workers": 0, "in_memory": True,
        "generator_width": 32, "residual_blocks": 4, "discriminator_width": 16,
        "init_epochs": 2, "init_decay_epochs": 1, "epochs": 4, "decay_epochs": 2,
        "steps_per_epoch": 40, "vgg_weights": "auto", "content_layer": "auto",
        "checkpoint_every": 50, "log_every": 5, "samples": 6, "export_every": 1,
        "description": ("demo: smaller model (G width 32, 4 residual blocks; D width 16) on "
                        "96x96 crops, a short schedule at the paper's learning rates, "
                        "so that a CPU runs it in minutes; not the paper's run"),
    },
    "smoke": {
        "image_size": 32, "batch_size": 2, "workers": 0, "in_memory": True,
        "generator_width": 8, "residual_blocks": 1, "discriminator_width": 8,
        "init_epochs": 1, "init_decay_epochs": 0, "epochs": 1, "decay_epochs": 1,
        "steps_per_epoch": 2, "pool_size": 4, "checkpoint_every": 2, "log_every": 1,
        "samples": 2, "export_every": 1, "vgg_weights": "random",
        "description": "smoke: a tiny model for a few steps; proves the code path only",
    },
}


#: What fine-tuning (``init_from`` set) changes in a profile: no initialization phase (the
#: released generator already reconstructs content), and under ``demo`` a schedule that a CPU
#: runs in minutes at 10x the paper's adversarial learning rate (the paper's 1e-5 moves a
#: released generator too little in a few hundred steps; see notebook 08).
FINE_TUNING: dict[str, dict[str, Any]] = {
    "paper": {"init_epochs": 0, "init_decay_epochs": 0,
              "description": "paper fine-tuning: the authors' adversarial phase and settings, "
                             "from a released or saved generator"},
    "demo": {"init_epochs": 0, "init_decay_epochs": 0, "image_size": 96, "batch_size": 4,
             "epochs": 4, "decay_epochs": 2, "steps_per_epoch": 25, "lr": 1e-4, "samples": 16,
             "description": ("demo fine-tuning: the released generator (full size) on 96x96 "
                             "crops, 4 + 2 epochs of 25 steps at lr 1e-4 (10x the paper's) so "
                             "that a CPU runs it in minutes; 16 held-out photos measured; not "
                             "the paper's run")},
    "smoke": {"init_epochs": 0, "init_decay_epochs": 0,
              "description": "smoke fine-tuning: a few steps; proves the code path only"},
}

ARCHITECTURE_FIELDS = {"generator_width": "width", "residual_blocks": "residual_blocks",
                       "norm": "norm"}


def preset(profile: str, **overrides: Any) -> TrainConfig:
    """The config of a profile (``smoke``, ``demo``, ``paper``) with ``overrides`` applied;
    an override of None keeps the preset's value. An unknown field is an error that lists the
    known ones. With ``init_from`` (fine-tuning), :data:`FINE_TUNING` is applied over the
    profile and the generator's architecture is read from that style or file (an override
    that contradicts it is an error)."""
    if profile not in PRESETS:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(unknown)}; the settings are: "
                         f"{', '.join(sorted(known))}")
    given = {name: value for name, value in overrides.items() if value is not None}
    settings = {**PRESETS[profile], **given}
    if settings.get("init_from"):
        settings = {**PRESETS[profile], **FINE_TUNING[profile],
                    **_architecture_of(settings["init_from"], given), **given}
    return TrainConfig(**settings)


def _architecture_of(init_from: str, given: dict[str, Any]) -> dict[str, Any]:
    """The generator fields of the style or file ``init_from``; ValueError when ``given``
    asks for another."""
    architecture = pretrained.architecture(init_from)
    found = {name: architecture[key] for name, key in ARCHITECTURE_FIELDS.items()}
    clashes = [f"{name}={given[name]!r} (the file has {value!r})"
               for name, value in found.items() if name in given and given[name] != value]
    if clashes:
        raise ValueError(f"init_from={init_from!r} fixes the generator's architecture: drop "
                         + ", ".join(clashes))
    return found


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` option per :class:`TrainConfig` field (``--flag/--no-flag`` for
    booleans), all defaulting to "not given", so that the preset decides."""
    for item in fields(TrainConfig):
        flag = "--" + item.name.replace("_", "-")
        kind = {"int": int, "float": float, "str": str, "bool": bool}[str(item.type)]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS,
                                metavar=kind.__name__.upper())


#: Settings that may differ when a run is resumed (where and how fast, not what is learned).
RUNTIME_FIELDS = {"data", "out", "workers", "in_memory", "device", "precision", "channels_last",
                  "compile", "checkpoint_every", "keep_checkpoints", "log_every", "export_every",
                  "description", "reference_style"}


def learning_rate(base: float, constant_epochs: int, decay_epochs: int, epoch: float) -> float:
    """The schedule: ``base`` for the first ``constant_epochs``, then linear decay to 0 over
    ``decay_epochs``; ``epoch`` may be fractional (the rate changes every step)."""
    if epoch < constant_epochs or decay_epochs == 0:
        return base
    return base * max(0.0, 1.0 - (epoch - constant_epochs) / decay_epochs)


# -- what a run needs before it starts ----------------------------------------------------------

def domains_used(config: TrainConfig) -> tuple[str, ...]:
    """The training domains a run of ``config`` draws batches from."""
    adversarial = config.epochs + config.decay_epochs > 0
    return batches.TRAINING_DOMAINS if adversarial else ("photos",)


def check_data(config: TrainConfig) -> dict[str, int]:
    """Images per domain of ``config.data``, checked before any work: every domain the run
    uses holds at least one global batch (the message names the short one) and images large
    enough for ``image_size`` (:func:`cglib.data.check_image_sizes`)."""
    if not config.data:
        raise ValueError("no data set given: set data (--data DIR) to a folder with photos/, "
                         "photos_test/, cartoons/ and cartoons_smoothed/")
    root = Path(config.data).expanduser().resolve()
    counts = data.check_dataset(root)
    for domain in domains_used(config):
        if counts[domain] < config.batch_size:
            raise ValueError(f"{root / domain} holds {counts[domain]} images, fewer than one "
                             f"batch of {config.batch_size}: add images or lower batch_size "
                             f"(--batch-size)")
    data.check_image_sizes(root, domains_used(config), config.image_size)
    return counts


@functools.cache
def _resolved_vgg_weights(preference: str) -> str:
    """``imagenet`` or ``random`` for ``preference``: found or downloaded once per process, so
    that a notebook training several runs tries and warns once."""
    return vgg.resolve_vgg_weights(preference,
                                   fallback="random" if preference == "auto" else None)


def content_network(config: TrainConfig) -> vgg.VGG19Features:
    """The frozen VGG19 of the content loss as ``config.vgg_weights`` and
    ``config.content_layer`` ask. ``vgg_weights="auto"`` takes the ImageNet weights when they
    can be found or downloaded and falls back, with a warning, to random filters;
    ``"imagenet"`` raises with what to do when they cannot be had."""
    weights = _resolved_vgg_weights(config.vgg_weights)
    layer = config.content_layer
    if layer == "auto":
        layer = "conv4_4" if weights == "imagenet" else RANDOM_FILTERS_LAYER
    with warnings.catch_warnings():  # random filters were chosen, and warned about, above
        warnings.simplefilter("ignore", UserWarning)
        return vgg.VGG19Features(weights=weights, layer=layer, seed=config.seed)


def initial_generator(config: TrainConfig) -> models.Generator:
    """The generator a run of ``config`` starts from, in training mode: every generator seeded
    with ``config.seed``, then a fresh :class:`cglib.models.Generator` (weights N(0, 0.02)),
    or the generator of ``config.init_from`` (a released style or a generator file, whose
    architecture must be the config's). The trainer builds its own this way, so this is the
    "before" picture of any run."""
    env.seed_everything(config.seed)
    if not config.init_from:
        return models.Generator(config.generator_width, config.residual_blocks, config.norm)
    generator = pretrained.load(config.init_from)
    _architecture_of(config.init_from, {name: getattr(config, name)
                                        for name in ARCHITECTURE_FIELDS})
    return generator.train()


def pick_precision(config: TrainConfig, device: torch.device,
                   agrees: Callable[[], bool] | None = None) -> tuple[str, str]:
    """The precision a run trains in, and why. ``auto``: bf16 on CUDA GPUs of compute
    capability 8.0 or more, fp16 (with a gradient scaler) on older ones such as the T4; on a
    CPU with native bf16, bf16 when ``agrees()`` (a few steps in bf16 stay finite and close to
    fp32, :func:`bf16_agrees`), else fp32; fp32 elsewhere."""
    requested = config.precision
    if requested != "auto":
        if requested == "fp16" and device.type != "cuda":
            raise ValueError(f"precision='fp16' needs a CUDA GPU; this run is on {device}; use "
                             "'bf16', 'fp32' or 'auto'")
        return requested, "asked for"
    if device.type == "cuda":
        return ("bf16", "GPU of compute capability 8.0 or more") if env.bf16_capable(device) \
            else ("fp16", "GPU older than compute capability 8.0")
    if device.type == "cpu" and env.cpu_has_native_bf16():
        if agrees is None or agrees():
            return "bf16", "CPU with native bf16; a check kept the losses close to fp32"
        return "fp32", "CPU with native bf16, but a check found bf16 losses off; fp32"
    return "fp32", f"no fast bf16 on {device}"


def bf16_agrees(generator: models.Generator, content: losses.ContentLoss, photos: torch.Tensor,
                lr: float, count: int = 3, tolerance: float = 0.05) -> bool:
    """True when ``count`` initialization steps from copies of ``generator`` on ``photos``
    (N, 3, S, S) give finite losses in bf16 within ``tolerance`` (relative) of fp32."""
    trajectories = []
    for precision in ("fp32", "bf16"):
        model = copy.deepcopy(generator)
        optimizer = torch.optim.Adam(model.parameters(), lr, betas=(0.5, 0.999))
        updater = steps.Updater(photos.device, precision, max_nonfinite=count)
        trajectories.append([float(updater.run(steps.init_step, (model,), model, optimizer,
                                                content, photos).get("content", math.nan))
                             for _ in range(count)])
    fp32, bf16 = np.array(trajectories[0]), np.array(trajectories[1])
    return bool(np.isfinite(bf16).all() and
                (np.abs(bf16 - fp32) <= tolerance * np.abs(fp32)).all())


# -- the trainer ---------------------------------------------------------------------------------

@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    phase: str = "init"
    epoch: int = 0  # within the phase, 0-based
    step_in_epoch: int = 0
    step: int = 0  # over the whole run
    batches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        batches.TRAINING_DOMAINS, 0))
    nonfinite: int = 0
    seconds: float = 0.0  # training time so far, over all sessions
    epoch_seconds: float = 0.0  # of the current epoch


class Interrupted(KeyboardInterrupt):
    """Training stopped at a step boundary on Ctrl-C or SIGTERM, after writing a checkpoint;
    the message says how to resume, ``signal`` is the signal's number (for the exit status,
    :func:`cglib.files.exit_status`)."""


@dataclass
class Networks:
    """What a run trains, and with what: the generator and the discriminator (and the replicas
    that several processes train, ``G`` and ``D``: the networks themselves on one process),
    the content loss, the history pool."""

    generator: models.Generator
    discriminator: models.Discriminator
    G: torch.nn.Module
    D: torch.nn.Module
    content: losses.ContentLoss
    pool: distributed.SharedPool

    @classmethod
    def build(cls, config: TrainConfig, context: distributed.Context,
              content: losses.ContentLoss | None = None) -> Networks:
        """The networks of a run of ``config``, fresh (:func:`initial_generator`), on the
        context's device; ``content``: a content loss already built for ``config``."""
        generator = initial_generator(config).to(context.device)
        discriminator = models.Discriminator(config.discriminator_width,
                                             config.norm).to(context.device)
        if config.channels_last:
            generator.to(memory_format=torch.channels_last)
            discriminator.to(memory_format=torch.channels_last)
        if content is None:
            content = losses.ContentLoss(content_network(config), kind=config.content_loss,
                                         weight=config.content_weight).to(context.device)
        pool = distributed.SharedPool(config.pool_size,
                                      torch.Generator().manual_seed(config.seed + 17), context)
        G, D = (distributed.replicate(network, context) for network in (generator,
                                                                         discriminator))
        if config.compile:
            G, D = torch.compile(G), torch.compile(D)
        return cls(generator, discriminator, G, D, content, pool)

    def optimizers(self, config: TrainConfig, phase: str) -> dict[str, torch.optim.Optimizer]:
        """Adam for the generator alone (initialization phase) or for both networks."""
        betas = (config.beta1, config.beta2)
        if phase == "init":
            return {"generator": torch.optim.Adam(self.generator.parameters(), config.init_lr,
                                                  betas=betas)}
        return {name: torch.optim.Adam(network.parameters(), config.lr, betas=betas)
                for name, network in (("generator", self.generator),
                                      ("discriminator", self.discriminator))}

    def step(self, phase: str, batch: dict[str, torch.Tensor],
             optimizers: dict[str, torch.optim.Optimizer], updater: steps.Updater,
             recipe: TrainConfig, at: int) -> dict[str, torch.Tensor]:
        """One step of ``phase`` on ``batch`` (a tensor per training domain), through
        ``updater``: :func:`cglib.steps.init_step` or :func:`cglib.steps.adversarial_step`."""
        networks = (self.generator, self.discriminator)
        if phase == "init":
            return updater.run(steps.init_step, networks, self.G, optimizers["generator"],
                               self.content, batch["photos"], at=at)
        return updater.run(steps.adversarial_step, networks, self.G, self.D, optimizers,
                           self.pool, self.content, batch["photos"], batch["cartoons"],
                           batch["cartoons_smoothed"], recipe, at=at)


class Samples:
    """The held-out photos a run follows: drawn through the generator at every epoch end,
    as a grid and as measures (:func:`cglib.metrics.epoch_measures`, with the outputs of the
    released generator that made the data set's cartoons, when it is at hand). Only the
    process that writes files (``main``) draws them."""

    def __init__(self, root: Path, config: TrainConfig, main: bool) -> None:
        self.photos = batches.load_images(root / "photos_test", config.samples,
                                          config.image_size) if main else []
        self.references = reference_cartoons(root, self.photos, config.reference_style) \
            if self.photos else None

    def outputs(self, generator: torch.nn.Module) -> list[np.ndarray]:
        """The photos through ``generator``, H x W x 3 uint8 RGB (fp32, whatever the training
        precision)."""
        return inference.cartoonize(generator, self.photos, precision="fp32") \
            if self.photos else []

    def record(self, generator: torch.nn.Module) -> tuple[np.ndarray | None, dict[str, float]]:
        """The grid (photos on top, outputs below) and the measures; (None, {}) without
        photos."""
        outputs = self.outputs(generator)
        if not outputs:
            return None, {}
        grid = np.concatenate([np.concatenate(self.photos, axis=1),
                               np.concatenate(outputs, axis=1)], axis=0)
        return grid, metrics.epoch_measures(outputs, self.photos, self.references)


def reference_cartoons(root: Path, photos: list[np.ndarray], style: str = ""
                       ) -> list[np.ndarray] | None:
    """The cartoons of ``photos`` (H x W x 3 uint8 RGB) by the released generator ``style``
    (downloaded when missing), or by default by the one that drew the cartoons of the data set
    at ``root`` (its manifest says ``official:<style>``) when its weights are at hand; None
    when there is none."""
    if style:
        return pretrained.render_cartoons(photos, style)
    source = data.read_manifest(root).get("recipe", {}).get("cartoon_source", "")
    style = source.split(":", 1)[1] if source.startswith("official:") else ""
    if not (style and pretrained.weights_available(style)):
        return None
    return pretrained.render_cartoons(photos, style)


class Trainer:
    """Trains CartoonGAN as ``config`` says: the loop around the paper's steps (see the module
    docstring).

    Before any work the settings and the data set are checked (every domain the run uses must
    hold a global batch) and so is the run folder: one that holds a run is refused unless
    ``resume`` (continue from its newest readable checkpoint; a fresh start when there is
    none) or ``overwrite`` (move the old run aside). Under torchrun the processes join here.
    """

    def __init__(self, config: TrainConfig, resume: bool = False,
                 overwrite: bool = False) -> None:
        self.counts = check_data(config)
        self.context = distributed.start(config.device)
        self.run, config, loaded = _open_run(config, resume, overwrite, self.context)
        self.config, self.device = config, self.context.device
        self.data_root = Path(config.data).expanduser().resolve()
        self.networks = Networks.build(config, self.context)
        self.precision, self.precision_reason = pick_precision(
            config, self.device, lambda: bf16_agrees(
                self.networks.generator, self.networks.content,
                _check_photos(self.data_root, config, self.device), config.init_lr))
        self.progress = Progress(phase="init" if self.phase_length("init") else "adversarial")
        self.optimizers = self.networks.optimizers(config, self.progress.phase)
        self.updater = steps.Updater(self.device, self.precision, config.max_nonfinite,
                                     config.zero_biases)
        self.resumed_from = loaded and loaded[1]
        if loaded:
            with checkpoints.restoring(loaded[1]):
                self.load_state_dict(loaded[0])
        self.run.truncate(self.progress.step)
        self.samples = Samples(self.data_root, config, self.context.main)
        self.streams: dict[str, batches.Stream] = {}  # kept from epoch to epoch
        self.datasets: dict[str, batches.ImageFolder] = {}
        self.values: dict[str, torch.Tensor] = {}  # the losses of the newest complete step

    def phase_length(self, phase: str) -> int:
        """Epochs of ``phase`` in all."""
        return sum(self.config.phase_epochs(phase))

    @property
    def steps_per_epoch(self) -> int:
        """Steps in one epoch: ``steps_per_epoch`` if set, else one pass over the photos."""
        return self.config.steps_per_epoch or self.counts["photos"] // self.config.batch_size

    @property
    def done(self) -> bool:
        return self.progress.phase == "done"

    @property
    def last(self) -> dict[str, float]:
        """The losses of the newest completed step, as numbers."""
        return {name: float(value) for name, value in self.values.items()}

    def state_dict(self) -> dict:
        """Everything a resume needs; plain types only (``weights_only`` loading)."""
        self.progress.nonfinite = self.updater.nonfinite
        return {"format": checkpoints.FORMAT, "config": dataclasses.asdict(self.config),
                "progress": dataclasses.asdict(self.progress),
                "models": {"generator": self.networks.generator.state_dict(),
                           "discriminator": self.networks.discriminator.state_dict()},
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "scaler": self.updater.scaler.state_dict(),
                "pool": self.networks.pool.state_dict(), "rng": checkpoints.rng_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`."""
        for name in ("generator", "discriminator"):
            getattr(self.networks, name).load_state_dict(state["models"][name])
        self.progress = Progress(**state["progress"])
        self.updater.nonfinite = self.progress.nonfinite
        self.optimizers = self.networks.optimizers(self.config, self.progress.phase)
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        if state["scaler"]:
            self.updater.scaler.load_state_dict(state["scaler"])
        self.networks.pool.load_state_dict(state["pool"], self.device)
        checkpoints.set_rng_state(state["rng"])

    def save_checkpoint(self) -> Path:
        """Write a checkpoint now (the first process, atomically), keeping the newest
        ``keep_checkpoints``; returns its path."""
        if self.context.main:
            checkpoints.save_checkpoint(self.state_dict(), self.run.checkpoints,
                                        self.progress.step, self.config.keep_checkpoints)
        return checkpoints.checkpoint_path(self.run.checkpoints, self.progress.step)

    def fit(self, until_step: int | None = None, progress_bar: bool = True,
            callback: Callable[[Trainer], None] | None = None) -> dict:
        """Train to the end of both phases (or until global step ``until_step``, for tests and
        notebooks that show a phase at a time). ``callback(trainer)`` runs after every epoch
        (live plots). Ctrl-C stops at the end of the current step, writes a checkpoint and
        raises :class:`Interrupted` (a second Ctrl-C stops at once). Returns a summary: steps,
        seconds, images/s, the last logged values."""
        self.run.write_config(dataclasses.asdict(self.config))
        start_step, start_time = self.progress.step, time.perf_counter()
        with _deferred_interrupt() as interrupted, _lost_peers(self):
            while not self.done and (until_step is None or self.progress.step < until_step):
                if self.progress.epoch >= self.phase_length(self.progress.phase):
                    self._next_phase()
                    continue
                epoch = Epoch(self)
                epoch.run(until_step, progress_bar, interrupted)
                if self.progress.step_in_epoch == self.steps_per_epoch:
                    epoch.end()
                    if callback is not None:
                        callback(self)
        seconds = time.perf_counter() - start_time
        done = self.progress.step - start_step
        return {"steps": done, "seconds": seconds, "phase": self.progress.phase,
                "images_per_second": done * self.config.batch_size / max(seconds, 1e-9),
                "nonfinite_steps": self.updater.nonfinite, **self.last}

    def _next_phase(self) -> None:
        if self.progress.phase == "init":
            self.run.export(self.networks.generator, "generator-init.pt")
            self.progress = dataclasses.replace(self.progress, phase="adversarial", epoch=0,
                                                step_in_epoch=0, epoch_seconds=0.0)
            self.optimizers = self.networks.optimizers(self.config, "adversarial")
        else:
            self.progress.phase = "done"
        self.save_checkpoint()


class Epoch:
    """A trainer's current epoch: its steps, each with its learning rate (the schedule), a
    batch per domain and the phase's step, their bookkeeping (progress bar, metric lines,
    checkpoints, interrupts), and the epoch's end."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer, self.progress, self.config = trainer, trainer.progress, trainer.config

    def run(self, until_step: int | None, progress_bar: bool,
            interrupted: Callable[[], bool]) -> None:
        """Steps until the epoch's end, ``until_step`` or an interrupt (which writes a
        checkpoint and raises :class:`Interrupted`)."""
        from tqdm.auto import tqdm

        trainer, progress, config = self.trainer, self.progress, self.config
        bar = tqdm(total=trainer.steps_per_epoch, initial=progress.step_in_epoch,
                   desc=f"{progress.phase} {progress.epoch + 1}/"
                        f"{trainer.phase_length(progress.phase)}",
                   disable=not (progress_bar and trainer.context.main), leave=False)
        window = time.perf_counter()
        with bar:
            while progress.step_in_epoch < trainer.steps_per_epoch:
                if until_step is not None and progress.step >= until_step:
                    return
                self.step()
                bar.update(1)
                if progress.step % config.log_every == 0:
                    rate = self.log(time.perf_counter() - window)
                    window = time.perf_counter()
                    bar.set_postfix({k: f"{v:.3g}" for k, v in trainer.last.items()
                                     if not k.startswith("d_")} | {"img/s": f"{rate:.1f}"})
                if progress.step % config.checkpoint_every == 0:
                    trainer.save_checkpoint()
                if distributed.any_process(interrupted(), trainer.context):
                    raise Interrupted(f"interrupted: checkpoint {trainer.save_checkpoint()} "
                                      "written at the end of a step; resume with --resume "
                                      "(resume=True)")

    def step(self) -> None:
        """The learning rate of this step, a batch per domain, the phase's step."""
        trainer, progress, config = self.trainer, self.progress, self.config
        started = time.perf_counter()
        constant, decay = config.phase_epochs(progress.phase)
        rate = learning_rate(config.init_lr if progress.phase == "init" else config.lr,
                             constant, decay,
                             progress.epoch + progress.step_in_epoch / trainer.steps_per_epoch)
        for optimizer in trainer.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = rate
        streams = self.streams()
        batch = {name: next(stream) for name, stream in streams.items()}
        if config.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
        trainer.values = trainer.networks.step(progress.phase, batch, trainer.optimizers,
                                               trainer.updater, config, progress.step
                                               ) or trainer.values
        progress.batches.update({name: stream.position for name, stream in streams.items()})
        progress.step, progress.step_in_epoch = progress.step + 1, progress.step_in_epoch + 1
        seconds = time.perf_counter() - started
        progress.seconds, progress.epoch_seconds = (progress.seconds + seconds,
                                                    progress.epoch_seconds + seconds)

    def end(self) -> None:
        """The epoch's end: the sample grid and its measures, the exported generators, the
        epoch line, a checkpoint."""
        trainer, progress, number = self.trainer, self.progress, self.progress.epoch + 1
        generator, run = trainer.networks.generator, trainer.run
        grid, measures = trainer.samples.record(generator)
        last_of_phase = number == trainer.phase_length(progress.phase)
        export = number % self.config.export_every == 0 or last_of_phase
        run.log_epoch({
            "phase": progress.phase, "epoch": number, "step": progress.step,
            "seconds": round(progress.epoch_seconds, 3),
            "images_per_second": trainer.steps_per_epoch * self.config.batch_size
            / max(progress.epoch_seconds, 1e-9),
            "samples": None if grid is None else run.save_samples(grid, progress.phase, number),
            "generator": run.export(generator, f"generators/{progress.phase}-epoch{number:03d}.pt")
            if export else None,
            "measures": measures})
        run.export(generator, "generator.pt")
        progress.epoch, progress.step_in_epoch, progress.epoch_seconds = number, 0, 0.0
        trainer.save_checkpoint()

    def streams(self) -> dict[str, batches.Stream]:
        """The phase's streams, kept by the trainer (made when the phase starts)."""
        trainer, config = self.trainer, self.config
        names = ("photos",) if self.progress.phase == "init" else batches.TRAINING_DOMAINS
        if tuple(trainer.streams) != names:
            trainer.streams = batches.training_streams(
                trainer.data_root, names, config.batch_size, config.image_size, config.seed,
                trainer.device, self.progress.batches, config.flip, config.workers,
                config.in_memory, trainer.context.rank, trainer.context.world,
                trainer.datasets)
        return trainer.streams

    def log(self, seconds: float) -> float:
        """Append a metric line (the first process); returns the images/s since the last."""
        trainer, progress = self.trainer, self.progress
        rate = self.config.log_every * self.config.batch_size / max(seconds, 1e-9)
        trainer.run.log({"step": progress.step, "phase": progress.phase,
                         "epoch": progress.epoch,
                         "lr": trainer.optimizers["generator"].param_groups[0]["lr"],
                         **trainer.last, "images_per_second": rate,
                         "seconds": round(progress.seconds, 3)})
        return rate


def _check_photos(root: Path, config: TrainConfig, device: torch.device) -> torch.Tensor:
    """A few training photos, center-cropped to at most 64 pixels: the bf16 check's batch
    (read directly, so that no stream moves)."""
    folder = batches.ImageFolder(root / "photos", config.image_size)
    photos = torch.stack([folder[index] for index in range(min(4, len(folder)))])
    side = min(64, config.image_size)
    top = (config.image_size - side) // 2
    return photos[..., top:top + side, top:top + side].to(device)


def _open_run(config: TrainConfig, resume: bool, overwrite: bool,
              context: distributed.Context) -> tuple[runs.RunFolder, TrainConfig, tuple | None]:
    """The run folder (claimed by the first process: the others check and wait), the config
    to run (the saved recipe when resuming) and the checkpoint loaded, with its path."""
    if not config.out:
        raise ValueError("no output folder given: set out (--out DIR)")
    resume = resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    folder = Path(config.out).expanduser()
    if not resume and not overwrite and runs.holds_run(folder):
        runs.claim(folder, resume, overwrite)  # raises, on every process alike
    lock = None  # the first process holds the folder's lock for the whole job
    if context.main:
        folder, lock = runs.claim(folder, resume, overwrite)
    if context.active:
        torch.distributed.barrier()
    run = runs.RunFolder(folder.resolve(), writer=context.main, lock=lock)
    if context.main:  # what a process killed while writing left (kill -9, a power cut)
        for place in (run.path, run.checkpoints):
            files.sweep_temporaries(place)
    loaded = checkpoints.load_latest(run.checkpoints) if resume else None
    if loaded is not None:
        config = _merge_saved_config(config, loaded[0]["config"], loaded[1])
    return run, config, loaded


@contextlib.contextmanager
def _lost_peers(trainer: Trainer) -> Iterator[None]:
    """On several processes, a failed collective call (a peer died) becomes one clear error;
    torchrun then ends the job (or restarts it, resuming from the checkpoint)."""
    try:
        yield
    except (steps.NonFiniteLossError, Interrupted):
        raise
    except RuntimeError as error:
        context = trainer.context
        if not context.active:
            raise
        raise RuntimeError(
            f"process {context.rank} of {context.world} lost the others at step "
            f"{trainer.progress.step} ({str(error).splitlines()[0]}); the newest checkpoint in "
            f"{trainer.run.checkpoints} is intact: rerun with --resume, or let torchrun "
            "--max-restarts resume from it") from None


def _merge_saved_config(given: TrainConfig, saved: dict, path: Path) -> TrainConfig:
    """The saved recipe, with this call's runtime settings. A recipe setting that differs from
    the saved one is an error: the resumed run would not be the run it continues."""
    defaults = TrainConfig()
    saved = {**dataclasses.asdict(defaults), **saved}  # settings newer than the checkpoint
    differing = [f"{name}: saved {saved[name]!r}, given {getattr(given, name)!r}"
                 for name in saved
                 if name not in RUNTIME_FIELDS and saved[name] != getattr(given, name)]
    if differing:
        raise ValueError(f"cannot resume {path}: the run was started with other settings ("
                         + "; ".join(differing) + "). Use the same settings, or a new output "
                         "folder")
    runtime = {name: getattr(given, name) for name in RUNTIME_FIELDS}
    return TrainConfig(**{**saved, **runtime})


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """While the block runs, Ctrl-C (SIGINT) and SIGTERM only raise a flag (the yielded
    function reads it) and put the previous handlers back, so that a second signal stops at
    once; the :class:`Interrupted` that leaves the block records the signal (exit status 143
    for SIGTERM, :func:`cglib.files.exit_status`). Outside the main thread signals cannot be
    caught: the flag stays down."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    numbers = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in numbers}

    def handler(number: int, frame: object) -> None:
        received.append(number)
        for each in numbers:
            signal.signal(each, previous[each])

    for number in numbers:
        signal.signal(number, handler)
    try:
        yield lambda: bool(received)
    except Interrupted as interrupt:
        interrupt.signal = received[0] if received else signal.SIGINT
        raise
    finally:
        for number in numbers:
            signal.signal(number, previous[number])


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False,
          progress_bar: bool = True, callback: Callable[[Trainer], None] | None = None
          ) -> Trainer:
    """Build a :class:`Trainer`, run it to the end (``callback`` after every epoch), and
    return it. Prints where it resumed from, the precision and the summary."""
    trainer = Trainer(config, resume=resume, overwrite=overwrite)
    if trainer.context.main:
        if trainer.resumed_from is not None:
            print(f"resuming from {trainer.resumed_from} (step {trainer.progress.step}, "
                  f"phase {trainer.progress.phase})")
        print(f"training on {trainer.device} ({trainer.context.world} process"
              f"{'es' if trainer.context.active else ''}), precision {trainer.precision} "
              f"({trainer.precision_reason})")
    summary = trainer.fit(progress_bar=progress_bar, callback=callback)
    if trainer.context.main:
        print(f"{summary['steps']} steps in {summary['seconds']:.0f} s "
              f"({summary['images_per_second']:.1f} images/s); generator: "
              f"{trainer.run.path / 'generator.pt'}")
    return trainer


def step_by_hand(trainer: Trainer, phase: str, count: int,
                 generator: models.Generator | None = None
                 ) -> Iterator[tuple[dict[str, float], models.Generator]]:
    """``count`` steps of ``phase`` on one batch (the first of the run's data order), as the
    trainer takes them (:meth:`Networks.step`: the same networks, optimizers, pool and
    updater, built from ``trainer.config``) but on a fresh set of networks, so the trainer's
    own stay as they are. ``generator``: weights for G to start from (e.g. the end of the
    initialization phase). Yields each step's losses and the generator after it."""
    config = trainer.config
    networks = Networks.build(config, trainer.context, trainer.networks.content)
    if generator is not None:
        networks.generator.load_state_dict(generator.state_dict())
    optimizers = networks.optimizers(config, phase)
    updater = steps.Updater(trainer.device, trainer.precision, config.max_nonfinite,
                            config.zero_biases)
    names = ("photos",) if phase == "init" else batches.TRAINING_DOMAINS
    streams = batches.training_streams(trainer.data_root, names, config.batch_size,
                                       config.image_size, config.seed, trainer.device,
                                       flip=config.flip)
    batch = {name: next(stream) for name, stream in streams.items()}
    for number in range(count):
        values = networks.step(phase, batch, optimizers, updater, config, at=number)
        yield {name: float(value) for name, value in values.items()}, networks.generator
