"""Every training setting, in one dataclass, and the two phases of training as data.

:class:`TrainConfig` holds every setting; its defaults are the authors'
(docs/paper.md#the-training-settings), and :data:`PRESETS` names three profiles: ``paper``
(the defaults), ``demo`` (a smaller model on smaller images, so that a CPU shows real learning
in minutes, like nanoGPT's CPU model) and ``smoke`` (seconds; proves the code path). The
command line ``python -m cglib train`` is generated from the dataclass
(:func:`add_config_arguments`), and a resumed run is checked against the saved recipe
(:func:`merge_saved`).

:data:`PHASES` is the table of the paper's two phases (Section 3.3): which networks each
trains, on which domains, with which step, learning rate and epochs. The trainer, the
schedule plot, the run report and the data streams all read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cglib import batches, env, losses, models, pretrained, steps, vgg


@dataclass
class TrainConfig:
    """Every training setting. Defaults: the authors' code, except where noted
    (docs/paper.md#the-training-settings)."""

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
                    **architecture_of(settings["init_from"], given), **given}
    return TrainConfig(**settings)


def architecture_of(init_from: str, given: dict[str, Any]) -> dict[str, Any]:
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



def merge_saved(given: TrainConfig, saved: dict, path: Path) -> TrainConfig:
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


# -- the phases ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """One phase of training. ``name`` is what checkpoints and logs record; ``trains`` the
    networks it updates (by attribute name), ``domains`` the data sets it draws a batch from at
    every step, ``step`` the paper's step (:mod:`cglib.steps`), ``lr_field`` and
    ``epoch_fields`` the :class:`TrainConfig` fields of its learning rate and of its
    (constant, decaying) epochs, ``keep_as`` the file its last generator is kept as in the
    run folder ("": none besides ``generator.pt``)."""

    name: str
    title: str
    trains: tuple[str, ...]
    domains: tuple[str, ...]
    step: Callable[..., dict]
    lr_field: str
    epoch_fields: tuple[str, str]
    keep_as: str = ""

    def learning_rate(self, config: TrainConfig, epoch: float) -> float:
        """The rate at (fractional) ``epoch`` of this phase: :func:`learning_rate`."""
        return learning_rate(getattr(config, self.lr_field), *self.epochs(config), epoch)

    def epochs(self, config: TrainConfig) -> tuple[int, int]:
        """(constant, decaying) epochs of this phase under ``config``."""
        return getattr(config, self.epoch_fields[0]), getattr(config, self.epoch_fields[1])

    def length(self, config: TrainConfig) -> int:
        """Epochs of this phase in all."""
        return sum(self.epochs(config))


#: The paper's two phases, in order: the initialization phase (G alone on the content loss,
#: Section 3.3) and the adversarial phase (both networks, the full objective).
PHASES = (
    Phase("init", "initialization", ("generator",), ("photos",), steps.init_step, "init_lr",
          ("init_epochs", "init_decay_epochs"), keep_as="generator-init.pt"),
    Phase("adversarial", "adversarial", ("generator", "discriminator"),
          batches.TRAINING_DOMAINS, steps.adversarial_step, "lr", ("epochs", "decay_epochs")),
)
INIT, ADVERSARIAL = PHASES
PHASE = {phase.name: phase for phase in PHASES}
#: What a finished run records as its phase.
DONE = "done"


def domains_used(config: TrainConfig) -> tuple[str, ...]:
    """The training domains a run of ``config`` draws batches from, in the order of
    :data:`cglib.batches.TRAINING_DOMAINS`."""
    used = {domain for phase in phases_run(config) for domain in phase.domains}
    return tuple(domain for domain in batches.TRAINING_DOMAINS if domain in used)


def phases_run(config: TrainConfig) -> tuple[Phase, ...]:
    """The phases a run of ``config`` goes through (those with at least one epoch)."""
    return tuple(phase for phase in PHASES if phase.length(config))


def phase_after(name: str, config: TrainConfig) -> str:
    """The name of the phase that follows phase ``name`` ("": the start) in a run of
    ``config``: the next one with epochs, or :data:`DONE`."""
    start = [phase.name for phase in PHASES].index(name) + 1 if name else 0
    later = [phase.name for phase in PHASES[start:] if phase.length(config)]
    return later[0] if later else DONE
