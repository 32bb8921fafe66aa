"""Training CartoonGAN: the initialization phase, then the adversarial phase; resumable, on one
process or many.

The settings are a :class:`cglib.config.TrainConfig` (with the profiles ``paper``, ``demo`` and
``smoke``), the phases the table :data:`cglib.config.PHASES`, the paper's two steps
:mod:`cglib.steps`. The :class:`Trainer` is the loop around them, on one screen in
:meth:`Trainer.fit`: the learning rate of the step (the schedule), a batch per domain
(:mod:`cglib.batches`), the phase's step, the metric line, the checkpoint, the epoch's end
(sample grid, measures, exported generators). Every random choice is keyed by the step or
saved, so a run resumes exactly; the run folder is :mod:`cglib.runs`; several processes run
under torchrun (:mod:`cglib.distributed`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cglib import (
    batches,
    checkpoints,
    data,
    distributed,
    env,
    files,
    losses,
    models,
    pretrained,
    runs,
    samples,
    steps,
    vgg,
)
from cglib.config import (
    PHASE,
    RANDOM_FILTERS_LAYER,
    Phase,
    TrainConfig,
    architecture_of,
    domains_used,
    merge_saved,
    phase_after,
)

# -- what a run needs before it starts ----------------------------------------------------------


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
    architecture_of(config.init_from, {name: getattr(config, name)
                                       for name in ("generator_width", "residual_blocks", "norm")})
    return generator.train()


# -- what a run trains ---------------------------------------------------------------------------

@dataclass
class Progress:
    """Where training stands; saved in every checkpoint. ``phase``: a name of
    :data:`cglib.config.PHASES`, or :data:`cglib.config.DONE`."""

    phase: str = "init"
    epoch: int = 0  # within the phase, 0-based
    step_in_epoch: int = 0
    step: int = 0  # over the whole run
    batches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        batches.TRAINING_DOMAINS, 0))
    nonfinite: int = 0
    seconds: float = 0.0  # training time so far, over all sessions
    epoch_seconds: float = 0.0  # of the current epoch

    def count_step(self, seconds: float) -> None:
        """A step taken, in ``seconds``."""
        self.step, self.step_in_epoch = self.step + 1, self.step_in_epoch + 1
        self.seconds, self.epoch_seconds = self.seconds + seconds, self.epoch_seconds + seconds

    def metric_line(self, lr: float, losses: dict[str, float], rate: float) -> dict:
        """The line of ``metrics.jsonl`` for the step just taken."""
        return {"step": self.step, "phase": self.phase, "epoch": self.epoch, "lr": lr, **losses,
                "images_per_second": rate, "seconds": round(self.seconds, 3)}

    def epoch_record(self, images: int, measures: dict[str, float]) -> runs.EpochRecord:
        """The record of the epoch now ending, which drew ``images``."""
        return runs.EpochRecord(self.phase, self.epoch + 1, self.step,
                                round(self.epoch_seconds, 3),
                                images / max(self.epoch_seconds, 1e-9), measures=measures)

    def start_epoch(self, number: int, phase: str | None = None) -> None:
        """Epoch ``number`` (0-based) of ``phase`` (default: the current one) begins."""
        self.phase = phase or self.phase
        self.epoch, self.step_in_epoch, self.epoch_seconds = number, 0, 0.0


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
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)

    @classmethod
    def build(cls, config: TrainConfig, context: distributed.Context) -> Networks:
        """The networks of a run of ``config``, fresh (:func:`initial_generator`), on the
        context's device."""
        generator = initial_generator(config).to(context.device)
        discriminator = models.Discriminator(config.discriminator_width,
                                             config.norm).to(context.device)
        if config.channels_last:
            generator.to(memory_format=torch.channels_last)
            discriminator.to(memory_format=torch.channels_last)
        content = losses.ContentLoss(content_network(config), kind=config.content_loss,
                                     weight=config.content_weight).to(context.device)
        pool = distributed.SharedPool(config.pool_size,
                                      torch.Generator().manual_seed(config.seed + 17), context)
        G, D = (distributed.replicate(network, context) for network in (generator,
                                                                         discriminator))
        if config.compile:
            G, D = torch.compile(G), torch.compile(D)
        return cls(generator, discriminator, G, D, content, pool)

    def start_phase(self, config: TrainConfig, phase: Phase | None) -> None:
        """Fresh optimizers for ``phase``: Adam for each network it trains, at its learning
        rate (none once the run is done)."""
        self.optimizers = {name: torch.optim.Adam(getattr(self, name).parameters(),
                                                  getattr(config, phase.lr_field),
                                                  betas=(config.beta1, config.beta2))
                           for name in (phase.trains if phase else ())}

    def step(self, phase: Phase, batch: dict[str, torch.Tensor], config: TrainConfig
             ) -> Callable[..., dict[str, torch.Tensor]]:
        """``phase.step`` with everything but ``update`` given (:func:`cglib.steps.bind`): these
        networks and optimizers, ``batch`` (a tensor per domain) and ``config``'s options."""
        return steps.bind(phase.step, G=self.G, D=self.D,
                          optimizer=self.optimizers["generator"], optimizers=self.optimizers,
                          pool=self.pool, content=self.content, **batch,
                          kind=config.adversarial_loss, edge_loss=config.edge_loss)

    def set_learning_rate(self, rate: float) -> None:
        """Every optimizer at ``rate`` (the schedule changes it at every step)."""
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = rate

    @property
    def learning_rate(self) -> float:
        """The generator's learning rate now."""
        return self.optimizers["generator"].param_groups[0]["lr"]

    def state_dict(self) -> dict:
        """The weights, the optimizers' state and the pool, as plain types."""
        return {"models": {"generator": self.generator.state_dict(),
                           "discriminator": self.discriminator.state_dict()},
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        """Continue from a :meth:`state_dict` (optimizers started for its phase first)."""
        for name in ("generator", "discriminator"):
            getattr(self, name).load_state_dict(state["models"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.pool.load_state_dict(state["pool"], device)

# -- the trainer ---------------------------------------------------------------------------------

class Trainer:
    """Trains CartoonGAN as ``config`` says: the loop around the paper's steps (see the module
    docstring). Before any work the settings, the data set (every domain the run uses holds a
    global batch) and the run folder are checked: one that holds a run is refused unless
    ``resume`` (continue from its newest readable checkpoint; a fresh start when there is
    none) or ``overwrite`` (move the old run aside). Under torchrun the processes join here.
    """

    def __init__(self, config: TrainConfig, resume: bool = False,
                 overwrite: bool = False) -> None:
        self.counts = check_data(config)
        self.context = distributed.start(config.device)
        self.folder, config, loaded = _open_run(config, resume, overwrite, self.context)
        self.config, self.device = config, self.context.device
        # steps in one epoch: steps_per_epoch if set, else one pass over the photos
        self.steps_per_epoch = config.steps_per_epoch or self.counts["photos"] // config.batch_size
        self.data_root = Path(config.data).expanduser().resolve()
        self.networks = Networks.build(config, self.context)
        self.precision, self.precision_reason = _precision(config, self.networks,
                                                           self.data_root, self.device)
        self.updater = steps.Updater(self.device, self.precision, config.max_nonfinite,
                                     config.zero_biases)
        self.progress = Progress(phase=phase_after("", config))
        self.networks.start_phase(config, self.phase)
        self.resumed_from = loaded and loaded[1]
        if loaded:
            with checkpoints.restoring(loaded[1]):
                self.load_state_dict(loaded[0])
        self.folder.truncate(self.progress.step)
        self.samples = samples.Samples(self.data_root, config, self.context.main)
        self.streams = batches.TrainingStreams(
            self.data_root, batch_size=config.batch_size, image_size=config.image_size,
            seed=config.seed, device=self.device, flip=config.flip, workers=config.workers,
            in_memory=config.in_memory, rank=self.context.rank, world=self.context.world,
            channels_last=config.channels_last)
        self.values: dict[str, torch.Tensor] = {}  # the losses of the newest step ({}: skipped)

    @property
    def phase(self) -> Phase | None:
        """The current phase (None when the run is done)."""
        return PHASE.get(self.progress.phase)

    @property
    def done(self) -> bool:
        return self.phase is None

    @property
    def last(self) -> dict[str, float]:
        """The losses of the newest step, as numbers ({} when it was skipped)."""
        return {name: float(value) for name, value in self.values.items()}

    def fit(self, until_step: int | None = None, progress_bar: bool = True,
            callback: Callable[[Trainer], None] | None = None) -> dict:
        """Train to the end of both phases (or until global step ``until_step``, for tests and
        notebooks that show a phase at a time). ``callback(trainer)`` runs after every epoch
        (live plots). Ctrl-C stops at the end of the current step, writes a checkpoint and
        raises :class:`Interrupted` (a second Ctrl-C stops at once). Returns a summary: steps,
        seconds, images/s, the last losses."""
        self.folder.write_config(dataclasses.asdict(self.config))
        progress, config, networks = self.progress, self.config, self.networks
        start_step, start_time, logged = progress.step, time.perf_counter(), progress.seconds
        bar = tqdm(disable=not (progress_bar and self.context.main), leave=False)
        with _deferred_interrupt() as interrupted, _lost_peers(self), bar:
            while not self.done and (until_step is None or progress.step < until_step):
                phase = self.phase
                if progress.epoch == phase.length(config):
                    self._next_phase()
                    continue
                if progress.step_in_epoch == 0 or bar.total is None:
                    _show_epoch(bar, progress, self.steps_per_epoch, phase.length(config))
                networks.set_learning_rate(phase.learning_rate(
                    config, progress.epoch + progress.step_in_epoch / self.steps_per_epoch))
                batch = self.streams.next_batch(phase.domains, progress.batches)
                started = time.perf_counter()
                self.values = self.updater.apply(networks.step(phase, batch, config),
                                               (networks.generator, networks.discriminator),
                                               at=progress.step)
                progress.count_step(time.perf_counter() - started)
                bar.update(1)
                if progress.step % config.log_every == 0:
                    bar.set_postfix(self._log(progress.seconds - logged))
                    logged = progress.seconds
                if progress.step_in_epoch == self.steps_per_epoch:
                    self._end_epoch()  # writes a checkpoint
                    if callback is not None:
                        callback(self)
                elif progress.step % config.checkpoint_every == 0:
                    self.save_checkpoint()
                if distributed.any_process(interrupted(), self.context):
                    raise Interrupted(f"interrupted: checkpoint {self.save_checkpoint()} "
                                      "written at the end of a step; resume with --resume "
                                      "(resume=True)")
        seconds, done = time.perf_counter() - start_time, progress.step - start_step
        return {"steps": done, "seconds": seconds, "phase": progress.phase,
                "images_per_second": done * config.batch_size / max(seconds, 1e-9),
                "nonfinite_steps": self.updater.nonfinite, **self.last}

    def _log(self, seconds: float) -> dict[str, str]:
        """Append a metric line (``seconds``: training time since the last); returns what the
        progress bar shows."""
        progress, config = self.progress, self.config
        rate = config.log_every * config.batch_size / max(seconds, 1e-9)
        self.folder.log(progress.metric_line(self.networks.learning_rate, self.last, rate))
        return {name: f"{value:.3g}" for name, value in self.last.items()
                if not name.startswith("d_")} | {"img/s": f"{rate:.1f}"}

    def _end_epoch(self) -> None:
        """The epoch's end: the sample grid and its measures, the exported generators, the
        epoch line (:meth:`cglib.runs.RunFolder.record_epoch`), a checkpoint."""
        progress, number = self.progress, self.progress.epoch + 1
        grid, measures = self.samples.record(self.networks.generator)
        record = progress.epoch_record(self.steps_per_epoch * self.config.batch_size, measures)
        self.folder.record_epoch(self.networks.generator, grid, record, export=(
            number % self.config.export_every == 0 or number == self.phase.length(self.config)))
        progress.start_epoch(number)
        self.save_checkpoint()

    def _next_phase(self) -> None:
        """The phase's end: its generator kept as the table says (``generator-init.pt``), the
        next phase's optimizers, a checkpoint."""
        progress = self.progress
        if self.phase.keep_as:
            self.folder.export(self.networks.generator, self.phase.keep_as)
        progress.start_epoch(0, phase_after(progress.phase, self.config))
        self.networks.start_phase(self.config, self.phase)
        self.save_checkpoint()

    def state_dict(self) -> dict:
        """Everything a resume needs; plain types only (``weights_only`` loading)."""
        self.progress.nonfinite = self.updater.nonfinite
        return {"format": checkpoints.FORMAT, "config": dataclasses.asdict(self.config),
                "progress": dataclasses.asdict(self.progress), **self.networks.state_dict(),
                "scaler": self.updater.scaler.state_dict(), "rng": checkpoints.rng_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`."""
        self.progress = Progress(**state["progress"])
        self.updater.nonfinite = self.progress.nonfinite
        self.networks.start_phase(self.config, self.phase)
        self.networks.load_state_dict(state, self.device)
        if state["scaler"]:
            self.updater.scaler.load_state_dict(state["scaler"])
        checkpoints.set_rng_state(state["rng"])

    def save_checkpoint(self) -> Path:
        """Write a checkpoint now (the first process, atomically); returns its path."""
        return self.folder.save_checkpoint(self.state_dict, self.progress.step,
                                           self.config.keep_checkpoints)


def _show_epoch(bar: tqdm, progress: Progress, steps_per_epoch: int, epochs: int) -> None:
    """``bar`` at the current epoch's start (or where a resumed run stands in it)."""
    bar.reset(total=steps_per_epoch)
    bar.update(progress.step_in_epoch)
    bar.set_description(f"{progress.phase} {progress.epoch + 1}/{epochs}")


# -- the run around the trainer ------------------------------------------------------------------

def _precision(config: TrainConfig, networks: Networks, root: Path, device: torch.device
               ) -> tuple[str, str]:
    """The run's precision and why (:func:`cglib.env.training_precision`; on a CPU with bf16,
    checked on a few training photos by :func:`cglib.steps.bf16_agrees`)."""
    return env.training_precision(config.precision, device, lambda: steps.bf16_agrees(
        networks.generator, networks.content, _check_photos(root, config, device),
        config.init_lr))


def _check_photos(root: Path, config: TrainConfig, device: torch.device) -> torch.Tensor:
    """A few training photos, center-cropped to at most 64 pixels: the bf16 check's batch
    (read directly, so that no stream moves)."""
    folder = data.ImageFolder(root / "photos", config.image_size)
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
        config = merge_saved(config, loaded[0]["config"], loaded[1])
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
            f"{trainer.folder.checkpoints} is intact: rerun with --resume, or let torchrun "
            "--max-restarts resume from it") from None


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
              f"{trainer.folder.path / 'generator.pt'}")
    return trainer
