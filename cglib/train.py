"""Training CartoonGAN: the initialization phase, then the adversarial phase; resumable.

One :class:`TrainConfig` dataclass holds every setting; its defaults are the authors' (see
PAPER.md), and :data:`PRESETS` names three profiles: ``paper`` (the defaults), ``demo`` (a
smaller model on smaller images, so that a CPU shows real learning in minutes, like nanoGPT's
CPU model) and ``smoke`` (seconds; proves the code path). The command line
``python -m cglib train`` is generated from the dataclass.

The :class:`Trainer` runs

- the initialization phase: G alone, content loss only, to reconstruct its input;
- the adversarial phase: per step one D update on cartoons (real), edge-smoothed cartoons and
  generated images (fake, through the history pool), then one G update on the adversarial term
  plus ``content_weight`` times the content loss;

with linear learning-rate decay, mixed precision by device, a guard against non-finite losses,
atomic checkpoints every ``checkpoint_every`` steps and at each epoch end, and exact resumption:
every random choice (data order, flips, the pool) is either keyed by the step or saved.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from cglib import checkpoints, data, env, images, inference, losses, models, pretrained, vgg

PHASES = ("init", "adversarial")


@dataclass
class TrainConfig:
    """Every training setting. Defaults: the authors' code (PAPER.md), except where noted."""

    # data and output
    data: str = ""  # data set root: photos/, photos_test/, cartoons/, cartoons_smoothed/
    out: str = ""  # run folder: checkpoints, metrics, samples, the exported generator
    image_size: int = 256
    batch_size: int = 8
    workers: int = 2  # data-loading processes per domain
    in_memory: bool = False  # hold each domain in memory as uint8 (fast; needs RAM)
    # models (paper: G width 64 with 8 residual blocks, D width 32)
    generator_width: int = 64
    residual_blocks: int = 8
    discriminator_width: int = 32
    norm: str = "instance"  # "instance" (the authors' code) or "batch" (the paper's text)
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
    pool_size: int = 50
    zero_biases: bool = True  # reset convolution biases before every step, as the authors did
    flip: bool = True  # random horizontal flips
    # speed
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on compute capability >= 8, fp16 on older GPUs, fp32
    channels_last: bool = False
    compile: bool = False
    # bookkeeping
    seed: int = 0
    steps_per_epoch: int = 0  # 0: one pass over the photos
    checkpoint_every: int = 500  # steps; a checkpoint is also written at every epoch end
    keep_checkpoints: int = 3
    log_every: int = 10  # steps between metric lines
    samples: int = 8  # held-out photos drawn through G at every epoch end
    max_nonfinite: int = 10  # skipped steps with NaN or infinite losses before stopping
    description: str = ""  # free text, shown with the run (e.g. "demo: smaller model")

    def __post_init__(self) -> None:
        choices = {"norm": ("instance", "batch"), "adversarial_loss": ("lsgan", "log"),
                   "content_loss": ("l1", "l2"), "vgg_weights": ("imagenet", "auto", "random"),
                   "precision": ("auto", "fp32", "bf16", "fp16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of "
                                 f"{', '.join(map(repr, allowed))}")
        if self.image_size % 4 or self.image_size < 16:
            raise ValueError(f"image_size={self.image_size}: use a multiple of 4, at least 16")
        for name in ("batch_size", "generator_width", "discriminator_width", "keep_checkpoints",
                     "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        for name in ("init_epochs", "init_decay_epochs", "epochs", "decay_epochs", "workers",
                     "pool_size", "steps_per_epoch", "samples", "residual_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must not be negative")

    def phase_epochs(self, phase: str) -> tuple[int, int]:
        """(constant, decaying) epochs of ``phase``."""
        if phase == "init":
            return self.init_epochs, self.init_decay_epochs
        return self.epochs, self.decay_epochs


#: Named presets. ``demo`` shrinks the model (G width 32 with 4 residual blocks, D width 16),
#: the images (96x96) and the schedule (360 steps) so that a 2-core CPU trains it in minutes:
#: a smaller real run, not the paper's model; learning rates and losses stay the paper's.
#: ``smoke`` is smaller still and learns nothing; it exercises every path.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"description": "paper: the authors' settings, full model, 256x256"},
    "demo": {
        "image_size": 96, "batch_size": 4, "workers": 0, "in_memory": True,
        "generator_width": 32, "residual_blocks": 4, "discriminator_width": 16,
        "init_epochs": 2, "init_decay_epochs": 1, "epochs": 4, "decay_epochs": 2,
        "steps_per_epoch": 40,
        "checkpoint_every": 50, "log_every": 5, "samples": 6, "vgg_weights": "auto",
        "description": ("demo: smaller model (G width 32, 4 residual blocks; D width 16) on "
                        "96x96 crops, 3 + 6 epochs of 40 steps at the paper's learning rates, "
                        "so that a CPU runs it in minutes; not the paper's run"),
    },
    "smoke": {
        "image_size": 32, "batch_size": 2, "workers": 0, "in_memory": True,
        "generator_width": 8, "residual_blocks": 1, "discriminator_width": 8,
        "init_epochs": 1, "init_decay_epochs": 0, "epochs": 1, "decay_epochs": 1,
        "steps_per_epoch": 2, "pool_size": 4, "checkpoint_every": 2, "log_every": 1,
        "samples": 2, "vgg_weights": "random",
        "description": "smoke: a tiny model for a few steps; proves the code path only",
    },
}


def preset(profile: str, **overrides: Any) -> TrainConfig:
    """The config of a profile (``smoke``, ``demo``, ``paper``) with ``overrides`` applied.
    An unknown field is an error that lists the known ones."""
    if profile not in PRESETS:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(unknown)}; the settings are: "
                         f"{', '.join(sorted(known))}")
    return TrainConfig(**{**PRESETS[profile], **overrides})


def config_from_parameters(profile: str, parameters: dict[str, Any],
                           ignore: tuple[str, ...] = (), **fixed: Any) -> TrainConfig:
    """A config from a notebook's upper-case parameters (``EPOCHS`` -> ``epochs``), e.g.
    ``config_from_parameters(run.profile, globals(), ignore=("DATA_DIR",), data=...)``.

    Every upper-case name in ``parameters`` except ``PROFILE`` and ``ignore`` must be a field,
    so a misspelt papermill parameter fails instead of being silently ignored. None keeps the
    preset's value. ``fixed`` settings are applied last.
    """
    overrides = {}
    for name, value in parameters.items():
        if not name.isupper() or name in ("PROFILE", *ignore) or value is None:
            continue
        overrides[name.lower()] = value
    return preset(profile, **{**overrides, **fixed})


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


# ----------------------------------------------------------------------------------------------
# Data order that can be resumed exactly


class ResumableBatches(Sampler[list[int]]):
    """Batches of indices for one domain, in an order fixed by ``(seed, epoch)``.

    Epoch ``e`` of the domain is a permutation drawn from a generator seeded with
    ``seed * 1_000_003 + e``; ``start`` batches are skipped at the first iteration, so that a
    resumed run sees exactly the batches the interrupted run would have seen. Each domain has
    its own seed: the three domains are shuffled independently, as in the authors' code.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0) -> None:
        if size < batch_size:
            raise ValueError(f"a domain holds {size} images, fewer than one batch of "
                             f"{batch_size}; add images or lower batch_size")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.batches_per_epoch = size // batch_size
        self.position = start  # batches handed out so far, over all epochs

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            epoch, offset = divmod(self.position, self.batches_per_epoch)
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            )
            for batch in range(offset, self.batches_per_epoch):
                self.position += 1
                yield order[batch * self.batch_size:(batch + 1) * self.batch_size].tolist()


def _domain_stream(dataset: data.ImageFolder, config: TrainConfig, seed: int, start: int,
                   device: torch.device) -> Iterator[torch.Tensor]:
    """Endless batches (N, 3, S, S) in [-1, 1] of one domain, starting at batch ``start``."""
    sampler = ResumableBatches(len(dataset), config.batch_size, seed, start)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.workers,
                        pin_memory=device.type == "cuda",
                        persistent_workers=config.workers > 0)
    for batch in loader:
        yield batch.to(device, non_blocking=True)


def _flip(batch: torch.Tensor, seed: int, step: int, domain: int) -> torch.Tensor:
    """Mirror each image of ``batch`` with probability 1/2, drawn from ``(seed, step, domain)``
    so that the flips repeat exactly after a resume."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + step) * 4 + domain)
    mirror = torch.rand(batch.shape[0], generator=generator) < 0.5
    if not mirror.any():
        return batch
    batch = batch.clone()
    batch[mirror.to(batch.device)] = batch[mirror.to(batch.device)].flip(-1)
    return batch


# ----------------------------------------------------------------------------------------------
# Precision and learning rates


def pick_precision(requested: str, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16``: ``auto`` gives bf16 on CUDA with compute capability 8.0 or
    more, fp16 (with a gradient scaler) on older CUDA GPUs such as the T4, fp32 elsewhere."""
    if requested != "auto":
        if requested != "fp32" and device.type != "cuda":
            raise ValueError(f"precision={requested!r} needs a CUDA GPU; this run is on "
                             f"{device}; use 'fp32' or 'auto'")
        return requested
    if device.type != "cuda":
        return "fp32"
    return "bf16" if env.bf16_capable(device) else "fp16"


def learning_rate(base: float, constant_epochs: int, decay_epochs: int, epoch: float) -> float:
    """``base`` for the first ``constant_epochs``, then linear decay to 0 over
    ``decay_epochs``; ``epoch`` may be fractional (the rate changes every step)."""
    if epoch < constant_epochs or decay_epochs == 0:
        return base
    return base * max(0.0, 1.0 - (epoch - constant_epochs) / decay_epochs)


# ----------------------------------------------------------------------------------------------
# The trainer


def initial_generator(config: TrainConfig) -> models.Generator:
    """The generator a run of ``config`` starts from: every generator seeded with
    ``config.seed``, then a fresh :class:`cglib.models.Generator` (weights N(0, 0.02)). The
    trainer builds its own this way, so this is the "before" picture of any run."""
    env.seed_everything(config.seed)
    return models.Generator(config.generator_width, config.residual_blocks, config.norm)


def content_network(config: TrainConfig) -> vgg.VGG19Features:
    """The frozen VGG19 of the content loss as ``config.vgg_weights`` asks: ``auto`` takes the
    ImageNet weights when they can be found or downloaded and falls back, with a warning, to
    random filters; ``imagenet`` raises with what to do when they cannot be had."""
    weights = vgg.resolve_vgg_weights(
        config.vgg_weights, fallback="random" if config.vgg_weights == "auto" else None)
    return vgg.VGG19Features(weights=weights, seed=config.seed)


class NonFiniteLossError(RuntimeError):
    """Too many steps produced NaN or infinite losses."""


# Settings that may differ when a run is resumed (where and how fast, not what is learned).
RUNTIME_FIELDS = {"data", "out", "workers", "in_memory", "device", "precision", "channels_last",
                  "compile", "checkpoint_every", "keep_checkpoints", "log_every", "description"}


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    phase: str = "init"
    epoch: int = 0  # within the phase
    step_in_epoch: int = 0
    step: int = 0  # over the whole run
    batches: dict[str, int] = field(default_factory=lambda: {
        "photos": 0, "cartoons": 0, "cartoons_smoothed": 0})
    nonfinite: int = 0


class Trainer:
    """Trains CartoonGAN as ``config`` says; see the module docstring for the phases.

    ``Trainer(config, resume=True)`` continues from the newest readable checkpoint in
    ``config.out/checkpoints`` (a fresh start when there is none). The data set is checked
    before anything else, so a missing folder or an empty domain fails at once.
    """

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        if not config.data:
            raise ValueError("no data set given: set data (--data DIR) to a folder with "
                             "photos/, photos_test/, cartoons/ and cartoons_smoothed/")
        if not config.out:
            raise ValueError("no output folder given: set out (--out DIR)")
        self.out = Path(config.out).expanduser().resolve()
        self.checkpoint_folder = self.out / "checkpoints"
        loaded = checkpoints.load_latest(self.checkpoint_folder) if resume else None
        if loaded is not None:
            config = self._merge_saved_config(config, loaded[0]["config"], loaded[1])
        self.config = config
        self.data_root = Path(config.data).expanduser().resolve()
        self.counts = data.check_dataset(self.data_root)
        self.device = env.pick_device(config.device)
        self.precision = pick_precision(config.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.generator = initial_generator(config).to(self.device)
        self.discriminator = models.Discriminator(config.discriminator_width,
                                                  config.norm).to(self.device)
        if config.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        self.content = losses.ContentLoss(content_network(config), kind=config.content_loss,
                                          weight=config.content_weight).to(self.device)
        self.pool = losses.ImagePool(config.pool_size,
                                     torch.Generator().manual_seed(config.seed + 17))
        self.progress = Progress(phase="init" if self._phase_length("init") else "adversarial")
        self.optimizers = self._make_optimizers(self.progress.phase)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.generator_step = self.generator
        self.discriminator_step = self.discriminator
        if config.compile:
            self.generator_step = torch.compile(self.generator)
            self.discriminator_step = torch.compile(self.discriminator)
        self.resumed_from: Path | None = None
        if loaded is not None:
            self._restore(loaded[0])
            self.resumed_from = loaded[1]
        self.sample_photos = data.load_images(self.data_root / "photos_test", config.samples,
                                              config.image_size) if config.samples else []
        self.metrics_file = self.out / "metrics.jsonl"
        self._datasets: dict[str, data.ImageFolder] = {}
        self._tensorboard = None

    # -- setup helpers ----------------------------------------------------------------------

    @staticmethod
    def _merge_saved_config(given: TrainConfig, saved: dict, path: Path) -> TrainConfig:
        """The saved recipe, with this call's runtime settings. A recipe setting that differs
        from the saved one is an error: the resumed run would not be the run it continues."""
        differing = [
            f"{name}: saved {saved[name]!r}, given {getattr(given, name)!r}"
            for name in saved
            if name not in RUNTIME_FIELDS and saved[name] != getattr(given, name)
        ]
        if differing:
            raise ValueError(
                f"cannot resume {path}: the run was started with other settings ("
                + "; ".join(differing) + "). Use the same settings, or a new output folder"
            )
        runtime = {name: getattr(given, name) for name in RUNTIME_FIELDS}
        return TrainConfig(**{**saved, **runtime})

    def _make_optimizers(self, phase: str) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        betas = (config.beta1, config.beta2)
        if phase == "init":
            return {"generator": torch.optim.Adam(self.generator.parameters(), config.init_lr,
                                                  betas=betas)}
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), config.lr, betas=betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), config.lr,
                                              betas=betas),
        }

    def _phase_length(self, phase: str) -> int:
        constant, decay = self.config.phase_epochs(phase)
        return constant + decay

    @property
    def steps_per_epoch(self) -> int:
        """Steps in one epoch: ``steps_per_epoch`` if set, else one pass over the photos."""
        return self.config.steps_per_epoch or self.counts["photos"] // self.config.batch_size

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _streams(self) -> dict[str, Iterator[torch.Tensor]]:
        names = ["photos"] if self.progress.phase == "init" else [
            "photos", "cartoons", "cartoons_smoothed"]
        for name in names:
            if name not in self._datasets:
                self._datasets[name] = data.ImageFolder(
                    self.data_root / name, image_size=self.config.image_size, flip=False,
                    in_memory=self.config.in_memory)
        return {
            name: _domain_stream(self._datasets[name], self.config, self.config.seed * 3 + index,
                                 self.progress.batches[name], self.device)
            for index, name in enumerate(names)
        }

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything a resume needs; plain types only (``weights_only`` loading)."""
        return {
            "format": "cglib-checkpoint",
            "config": dataclasses.asdict(self.config),
            "progress": dataclasses.asdict(self.progress),
            "models": {"generator": self.generator.state_dict(),
                       "discriminator": self.discriminator.state_dict()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "pool": self.pool.state_dict(),
            "rng": checkpoints.rng_state(),
        }

    def _restore(self, state: dict) -> None:
        self.generator.load_state_dict(state["models"]["generator"])
        self.discriminator.load_state_dict(state["models"]["discriminator"])
        self.progress = Progress(**state["progress"])
        self.optimizers = self._make_optimizers(self.progress.phase)
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.pool.load_state_dict(state["pool"], self.device)
        checkpoints.set_rng_state(state["rng"])

    def save_checkpoint(self) -> Path:
        """Write a checkpoint now (atomically), keeping the newest ``keep_checkpoints``."""
        return checkpoints.save_checkpoint(self.state_dict(), self.checkpoint_folder,
                                           self.progress.step, self.config.keep_checkpoints)

    def export_generator(self, name: str = "generator.pt") -> Path:
        """The generator alone, loadable by :func:`cglib.pretrained.load_generator`."""
        path = self.out / name
        pretrained.save_generator(self.generator, path)
        return path

    # -- steps --------------------------------------------------------------------------------

    def _set_learning_rates(self) -> None:
        constant, decay = self.config.phase_epochs(self.progress.phase)
        epoch = self.progress.epoch + self.progress.step_in_epoch / self.steps_per_epoch
        base = self.config.init_lr if self.progress.phase == "init" else self.config.lr
        rate = learning_rate(base, constant, decay, epoch)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = rate

    def _finite_or_skip(self, values: dict[str, torch.Tensor]) -> bool:
        if all(torch.isfinite(v).all() for v in values.values()):
            return True
        self.progress.nonfinite += 1
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        bad = ", ".join(k for k, v in values.items() if not torch.isfinite(v).all())
        if self.progress.nonfinite > self.config.max_nonfinite:
            raise NonFiniteLossError(
                f"{self.progress.nonfinite} steps gave NaN or infinite losses (last: {bad}, "
                f"step {self.progress.step}); stopped without writing the bad weights. The last "
                f"checkpoint in {self.checkpoint_folder} is intact: lower the learning rate or "
                "use precision='fp32', then resume"
            )
        print(f"step {self.progress.step}: non-finite {bad}; step skipped "
              f"({self.progress.nonfinite} so far)")
        return False

    def init_step(self, photos: torch.Tensor) -> dict[str, float]:
        """One initialization-phase step: G reconstructs ``photos`` (N, 3, S, S) in [-1, 1]
        under the content loss alone. Returns the logged values."""
        if self.config.zero_biases:
            models.zero_conv_biases(self.generator)
        optimizer = self.optimizers["generator"]
        optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            generated = self.generator_step(photos)
            weighted, content = self.content(photos, generated)
        if not self._finite_or_skip({"content": weighted}):
            return {}
        self.scaler.scale(weighted).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        return {"content": content.item()}

    def adversarial_step(self, photos: torch.Tensor, cartoons: torch.Tensor,
                         smoothed: torch.Tensor) -> dict[str, float]:
        """One adversarial step on batches (N, 3, S, S) in [-1, 1]: D on cartoon (real),
        edge-smoothed (fake) and generated (fake, via the pool), then G on its adversarial term
        plus ``content_weight`` times the content loss. Returns the logged values."""
        config = self.config
        if config.zero_biases:
            models.zero_conv_biases(self.generator)
            models.zero_conv_biases(self.discriminator)
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]
        with self._autocast():
            generated = self.generator_step(photos)
            d_cartoon = self.discriminator_step(cartoons)
            d_smoothed = self.discriminator_step(smoothed) if config.edge_loss else None
            d_generated = self.discriminator_step(self.pool.query(generated))
            loss_d, parts = losses.discriminator_loss(d_cartoon, d_smoothed, d_generated,
                                                      config.adversarial_loss, config.edge_loss)
        if not self._finite_or_skip({"discriminator": loss_d}):
            return {}
        opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(opt_d)

        self.discriminator.requires_grad_(False)
        with self._autocast():
            adversarial = losses.generator_adversarial_loss(self.discriminator_step(generated),
                                                            config.adversarial_loss)
            weighted, content = self.content(photos, generated)
            loss_g = adversarial + weighted
        self.discriminator.requires_grad_(True)
        if not self._finite_or_skip({"generator": loss_g}):
            self.scaler.update()  # D has stepped; the scaler must close this iteration
            return {}
        opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(opt_g)
        self.scaler.update()
        values = {"d_" + name: value.item() for name, value in parts.items()}
        values.update(discriminator=loss_d.item(), adversarial=adversarial.item(),
                      content=content.item())
        return values

    # -- the loop -------------------------------------------------------------------------------

    def fit(self, until_step: int | None = None, progress_bar: bool = True,
            callback: Callable[[Trainer], None] | None = None) -> dict:
        """Train to the end of both phases (or until global step ``until_step``, for tests and
        notebooks that show a phase at a time). ``callback(trainer)`` runs after every epoch
        (live plots). A keyboard interrupt writes a checkpoint first. Returns a summary: steps,
        seconds, images/s, the last logged values."""
        from tqdm.auto import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(dataclasses.asdict(self.config),
                                                         indent=1))
        start_time, start_step = time.perf_counter(), self.progress.step
        last: dict[str, float] = {}
        try:
            while self.progress.phase in PHASES:
                phase = self.progress.phase
                if self.progress.epoch >= self._phase_length(phase):
                    self._next_phase()
                    continue
                streams = self._streams()
                bar = tqdm(total=self.steps_per_epoch, initial=self.progress.step_in_epoch,
                           desc=f"{phase} {self.progress.epoch + 1}/{self._phase_length(phase)}",
                           disable=not progress_bar, leave=False)
                window = time.perf_counter()
                while self.progress.step_in_epoch < self.steps_per_epoch:
                    if until_step is not None and self.progress.step >= until_step:
                        bar.close()
                        return self._summary(start_time, start_step, last)
                    last = self._one_step(streams) or last
                    bar.update(1)
                    if self.progress.step % self.config.log_every == 0:
                        seconds = time.perf_counter() - window
                        rate = self.config.log_every * self.config.batch_size / max(seconds, 1e-9)
                        window = time.perf_counter()
                        self._log({**last, "images_per_second": rate})
                        bar.set_postfix({k: f"{v:.3g}" for k, v in last.items()
                                         if not k.startswith("d_")} | {"img/s": f"{rate:.1f}"})
                    if self.progress.step % self.config.checkpoint_every == 0:
                        self.save_checkpoint()
                bar.close()
                self._end_epoch()
                if callback is not None:
                    callback(self)
        except KeyboardInterrupt:
            path = self.save_checkpoint()
            print(f"interrupted: checkpoint {path} written; resume with resume=True (--resume)")
            raise
        finally:
            if self._tensorboard:
                self._tensorboard.flush()
        return self._summary(start_time, start_step, last)

    def _one_step(self, streams: dict[str, Iterator[torch.Tensor]]) -> dict[str, float]:
        progress, seed = self.progress, self.config.seed
        self._set_learning_rates()
        batches = {}
        for index, (name, stream) in enumerate(streams.items()):
            batch = next(stream)
            progress.batches[name] += 1
            if self.config.flip:
                batch = _flip(batch, seed, progress.step, index)
            if self.config.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            batches[name] = batch
        if progress.phase == "init":
            values = self.init_step(batches["photos"])
        else:
            values = self.adversarial_step(batches["photos"], batches["cartoons"],
                                           batches["cartoons_smoothed"])
        progress.step += 1
        progress.step_in_epoch += 1
        return values

    def _end_epoch(self) -> None:
        progress = self.progress
        self.save_samples()
        progress.epoch += 1
        progress.step_in_epoch = 0
        self.export_generator()
        self.save_checkpoint()

    def _next_phase(self) -> None:
        if self.progress.phase == "init":
            self.export_generator("generator-init.pt")
            self.progress = dataclasses.replace(self.progress, phase="adversarial", epoch=0,
                                                step_in_epoch=0)
            self.optimizers = self._make_optimizers("adversarial")
        else:
            self.progress.phase = "done"
        self.save_checkpoint()

    @property
    def done(self) -> bool:
        return self.progress.phase == "done"

    def _summary(self, start_time: float, start_step: int, last: dict) -> dict:
        seconds = time.perf_counter() - start_time
        steps = self.progress.step - start_step
        return {"steps": steps, "seconds": seconds, "phase": self.progress.phase,
                "images_per_second": steps * self.config.batch_size / max(seconds, 1e-9),
                "nonfinite_steps": self.progress.nonfinite, **last}

    # -- what the user sees ---------------------------------------------------------------------

    def _log(self, values: dict[str, float]) -> None:
        progress = self.progress
        record = {"step": progress.step, "phase": progress.phase, "epoch": progress.epoch,
                  "lr": self.optimizers["generator"].param_groups[0]["lr"], **values}
        with self.metrics_file.open("a") as file:
            file.write(json.dumps(record) + "\n")
        writer = self._tensorboard_writer()
        if writer is not None:
            for name, value in values.items():
                writer.add_scalar(f"{progress.phase}/{name}", value, progress.step)

    def _tensorboard_writer(self) -> object | None:
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the JSONL file is the record
                self._tensorboard = False
                return None
            self._tensorboard = SummaryWriter(str(self.out / "tensorboard"))
        return self._tensorboard or None

    @torch.no_grad()
    def cartoonize_samples(self) -> list[np.ndarray]:
        """The fixed held-out photos through the current generator, H x W x 3 uint8 RGB."""
        self.generator.eval()
        try:
            return inference.cartoonize(self.generator, self.sample_photos, device=self.device,
                                        precision="fp32")
        finally:
            self.generator.train()

    def save_samples(self) -> Path | None:
        """A grid: held-out photos (top) and G's outputs (bottom), as
        ``samples/<phase>-epoch<NNN>.png``."""
        if not self.sample_photos:
            return None
        grid = np.concatenate([np.concatenate(self.sample_photos, axis=1),
                               np.concatenate(self.cartoonize_samples(), axis=1)], axis=0)
        name = f"{self.progress.phase}-epoch{self.progress.epoch + 1:03d}.png"
        path = self.out / "samples" / name
        images.write_image(path, grid)
        return path


def read_metrics(out: str | Path) -> list[dict]:
    """The metric lines a run wrote (``metrics.jsonl``), oldest first."""
    path = Path(out) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(config: TrainConfig, resume: bool = False, progress_bar: bool = True,
          callback: Callable[[Trainer], None] | None = None) -> Trainer:
    """Build a :class:`Trainer`, run it to the end (``callback`` after every epoch), and
    return it."""
    trainer = Trainer(config, resume=resume)
    if trainer.resumed_from is not None:
        print(f"resuming from {trainer.resumed_from} (step {trainer.progress.step}, "
              f"phase {trainer.progress.phase})")
    summary = trainer.fit(progress_bar=progress_bar, callback=callback)
    print(f"{summary['steps']} steps in {summary['seconds']:.0f} s "
          f"({summary['images_per_second']:.1f} images/s); generator: "
          f"{trainer.out / 'generator.pt'}")
    return trainer
