"""A training run's folder: what it holds, how a run claims it, and never overwriting one.

::

    config.json         the run's settings (cglib.config.TrainConfig)
    metrics.jsonl       one line every log_every steps: losses, learning rate, speed, clock
    epochs.jsonl        one line per finished epoch: time, speed, sample grid, measures
    samples/            <phase>-epoch<NNN>.png: held-out photos (top) and G's outputs
    generators/         <phase>-epoch<NNN>.pt: the generator every export_every epochs
    generator-init.pt   the generator after the initialization phase
    generator.pt        the newest generator
    checkpoints/        checkpoint-<step>.pt, the newest few (cglib.checkpoints)
    report.html         the run as one page (python -m cglib report)
    .lock               held by the process that trains in the folder (its id inside)

A folder that holds a run is never written into by another run by accident: a new run there
is refused unless it resumes (``resume=True``, ``--resume``) or asks to ``overwrite``, which
moves the old run aside to ``<folder>.replaced-<time>`` rather than deleting anything. On a
resume, the metric lines after the checkpoint's step are dropped, so the files hold each step
once. One process at a time trains in a folder: :func:`claim` takes an operating-system lock
on its ``.lock`` file (:class:`RunLock`), which a second process (a ``--resume`` in another
terminal, a duplicated notebook) is refused; the system drops the lock when the holder ends,
however it ends, so a killed run never leaves a stale one.

:func:`read_run` reads a run folder back, the one reader of these files: a :class:`RunRecord`
with the settings, the metric lines one per step and one :class:`EpochRecord` per finished
epoch, leaving out (and counting) lines that cannot be read.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from torch import nn

from cglib import checkpoints, files, images, pretrained

#: What makes a folder a run folder: a run wrote one of these.
MARKERS = ("config.json", "metrics.jsonl", "checkpoints")


def holds_run(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds (part of) a training run."""
    folder = Path(folder)
    return any((folder / name).exists() for name in MARKERS[:2]) or bool(
        checkpoints.list_checkpoints(folder / "checkpoints"))


def move_aside(folder: Path) -> Path:
    """Rename ``folder`` to ``<folder>.replaced-<date>-<time>`` (a new name each time) and
    return the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = files.unused_path(folder.with_name(f"{folder.name}.replaced-{stamp}"))
    os.replace(folder, target)
    return target


def claim(folder: str | os.PathLike, resume: bool, overwrite: bool) -> tuple[Path, RunLock]:
    """The absolute run folder for a new run or a resumed one, checked before any work, and
    its lock (:func:`lock`), held for as long as the returned :class:`RunLock` lives.

    A folder holding a run is refused unless ``resume`` (continue it) or ``overwrite`` (move
    it aside first, printed). A path that is a file is refused, and so is a folder another
    process trains in (:class:`FolderInUse`), before anything is moved.
    """
    folder = Path(folder).expanduser()
    if not resume and holds_run(folder) and not overwrite:
        raise FileExistsError(
            f"{folder} holds a training run already; to continue it use --resume "
            "(resume=True), to start another choose a new --out, or give --overwrite "
            "(overwrite=True) to move the old run aside and start afresh")
    held = lock(files.output_folder(folder, "run folder"))
    if not resume and holds_run(folder):
        print(f"moved the run in {folder} to {move_aside(folder.resolve())}")
        held = lock(files.output_folder(folder, "run folder"))  # the new folder's own lock
    return folder.resolve(), held


#: The name of the lock file in a run folder.
LOCK_FILE = ".lock"

#: The locks this process holds, by the (device, inode) of their file: a second claim of a
#: folder in the same process (a notebook that resumes its own run) shares the lock.
_HELD: weakref.WeakValueDictionary[tuple[int, int], RunLock] = weakref.WeakValueDictionary()


class FolderInUse(RuntimeError):
    """Another process trains in the run folder."""


class RunLock:
    """An exclusive operating-system lock (``flock``) on a run folder's lock file, held while
    this object lives. The system drops it when the process ends, however it ends (``kill -9``
    included), so it never goes stale."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file

    def __del__(self) -> None:
        self.file.close()  # releases the lock


def lock(folder: Path) -> RunLock:
    """Hold the lock of the run folder ``folder`` (which exists) for this process, writing the
    process id into ``folder/.lock``. Raises :class:`FolderInUse`, naming the folder and the
    holder's process id, when another process holds it."""
    file = open(folder / LOCK_FILE, "a+", encoding="utf-8")  # kept open: it holds the lock
    status = os.fstat(file.fileno())
    key = (status.st_dev, status.st_ino)
    held = _HELD.get(key)
    if held is not None:
        file.close()
        return held
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip()
        file.close()
        raise FolderInUse(
            f"{folder} is in use: process {holder or '(unknown)'} trains in it; wait for it "
            "to end or stop it, then run again, or choose another --out") from None
    except OSError as error:  # a file system without locks: train, but say what is not kept
        warnings.warn(f"{folder} cannot be locked ({error.strerror}): make sure no other "
                      "process trains in it at the same time", stacklevel=2)
    file.truncate(0)
    file.write(f"{os.getpid()}\n")
    file.flush()
    held = _HELD[key] = RunLock(file)
    return held


class RunFolder:
    """The files of one run in ``path``. ``writer``: False on all processes but the first of
    a multi-process run, which then write nothing (every method is a no-op). ``lock``: the
    folder's lock (:func:`claim`), kept while the run folder is in use."""

    def __init__(self, path: Path, writer: bool = True, lock: RunLock | None = None) -> None:
        self.path, self.writer, self.lock = path, writer, lock
        self.checkpoints = path / "checkpoints"
        self.metrics = path / "metrics.jsonl"
        self.epochs = path / "epochs.jsonl"

    def write_config(self, config: dict) -> None:
        """Write ``config`` (the run's settings) as ``config.json``."""
        if self.writer:
            files.write_json(self.path / "config.json", config)

    def log(self, record: dict) -> None:
        """Append ``record`` as one line of ``metrics.jsonl``."""
        self._append(self.metrics, record)

    def log_epoch(self, record: dict) -> None:
        """Append ``record`` as one line of ``epochs.jsonl``."""
        self._append(self.epochs, record)

    def _append(self, path: Path, record: dict) -> None:
        if self.writer:
            with path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")

    def truncate(self, step: int) -> None:
        """Drop the metric and epoch lines written after global step ``step`` (a resumed run
        writes them again), atomically."""
        for path in (self.metrics, self.epochs):
            if self.writer and path.is_file():
                kept = [line for line in read_lines(path)[0] if line.get("step", 0) <= step]
                with files.atomic_write(path, "w") as file:
                    file.writelines(json.dumps(line) + "\n" for line in kept)

    def save_samples(self, grid: np.ndarray, phase: str, epoch: int) -> str:
        """The sample grid of ``epoch`` (1-based) as ``samples/<phase>-epoch<NNN>.png``;
        returns its path relative to the run folder."""
        name = f"samples/{phase}-epoch{epoch:03d}.png"
        if self.writer:
            images.write_image(self.path / name, grid)
        return name

    def save_checkpoint(self, state: Callable[[], dict], step: int, keep: int) -> Path:
        """Write ``state()`` (called by the writing process only) as the checkpoint of global
        step ``step``, keeping the newest ``keep`` (:func:`cglib.checkpoints.save_checkpoint`);
        returns its path."""
        if self.writer:
            checkpoints.save_checkpoint(state(), self.checkpoints, step, keep)
        return checkpoints.checkpoint_path(self.checkpoints, step)

    def record_epoch(self, generator: nn.Module, grid: np.ndarray | None, record: EpochRecord,
                     export: bool) -> None:
        """The end of the epoch of ``record``: the sample ``grid`` (H x W x 3 uint8 RGB, or
        None), ``generator`` as ``generator.pt`` and, when ``export``, under ``generators/``,
        and the epoch line: ``record`` with the paths of both."""
        phase, number = record.phase, record.epoch
        samples = None if grid is None else self.save_samples(grid, phase, number)
        kept = self.export(generator, f"generators/{phase}-epoch{number:03d}.pt") \
            if export else None
        self.log_epoch(dataclasses.asdict(dataclasses.replace(record, samples=samples,
                                                              generator=kept)))
        self.export(generator, "generator.pt")

    def export(self, generator: nn.Module, name: str) -> str:
        """Save ``generator`` as ``name`` (relative to the run folder), loadable with
        :func:`cglib.pretrained.load_generator`; returns ``name``."""
        if self.writer:
            pretrained.save_generator(getattr(generator, "module", generator), self.path / name)
        return name


# ----------------------------------------------------------------------------------------------
# Reading a run folder back


@dataclass
class EpochRecord:
    """One finished epoch: a line of ``epochs.jsonl`` (:meth:`RunFolder.log_epoch`)."""

    phase: str  # the training phase, "init" or "adversarial"
    epoch: int  # 1-based within the phase
    step: int | None = None  # global step at the epoch's end
    seconds: float | None = None  # wall seconds the epoch took
    images_per_second: float | None = None
    samples: str | None = None  # the sample grid, relative to the run folder
    generator: str | None = None  # the exported generator, relative to the run folder
    measures: dict[str, float] = field(default_factory=dict)  # cglib.metrics.epoch_measures

    @property
    def name(self) -> str:
        """E.g. ``"adversarial epoch 3 (step 120)"``."""
        name = f"{self.phase} epoch {self.epoch}"
        return name if self.step is None else f"{name} (step {self.step})"

    @classmethod
    def from_line(cls, line: dict) -> EpochRecord:
        """The epoch of a line of ``epochs.jsonl``; ValueError when the line lacks its phase
        or epoch, or holds a value of the wrong type. Measures that are not numbers are left
        out."""
        measures = _field(line, "measures", (dict,)) or {}
        phase, epoch = _field(line, "phase", (str,)), _field(line, "epoch", (int,))
        if phase is None or epoch is None:
            raise ValueError("the line names no phase or no epoch")
        return cls(
            phase=phase, epoch=epoch, step=_field(line, "step", (int,)),
            seconds=_field(line, "seconds", (int, float)),
            images_per_second=_field(line, "images_per_second", (int, float)),
            samples=_field(line, "samples", (str,)), generator=_field(line, "generator", (str,)),
            measures={str(k): float(v) for k, v in measures.items()
                      if isinstance(v, int | float) and not isinstance(v, bool)})


def _field(line: dict, key: str, kinds: tuple[type, ...]) -> Any:
    """``line[key]``, None when missing or null; ValueError when it is of another type (a
    bool is no number here)."""
    value = line.get(key)
    if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
        raise ValueError(f"{key}={value!r} is not {' or '.join(k.__name__ for k in kinds)}")
    return value


@dataclass
class RunRecord:
    """What a run folder holds, read back by :func:`read_run`."""

    path: Path  # the run folder
    config: dict[str, Any]  # config.json (cglib.config.TrainConfig as a dict); {} when unreadable
    metrics: list[dict]  # metrics.jsonl, one line per step, oldest first
    epochs: list[EpochRecord]  # epochs.jsonl, one per finished epoch, oldest first
    skipped: dict[str, int]  # file name -> how many of its lines could not be read
    config_error: str | None = None  # why config.json could not be read; None when it was

    @property
    def notes(self) -> list[str]:
        """What the reader left out, in words: the settings when config.json could not be
        read, the lines of each file that could not be."""
        notes = [] if self.config_error is None else [self.config_error]
        return notes + [f"{count} unreadable line(s) of {name} were skipped"
                        for name, count in self.skipped.items() if count]


def read_run(folder: str | os.PathLike) -> RunRecord:
    """Read the run in ``folder`` (what :class:`RunFolder` wrote). Raises FileNotFoundError,
    naming the folder and what a run folder holds, when it has neither ``config.json`` nor
    ``metrics.jsonl``. Lines that cannot be read (a line cut short by a killed process, say)
    are left out and counted in :attr:`RunRecord.skipped`."""
    path = Path(folder)
    if not (path / "config.json").is_file() and not (path / "metrics.jsonl").is_file():
        raise _not_a_run(path)
    config, config_error = _read_config(path / "config.json")
    metrics, bad_metrics = _read_metrics(path / "metrics.jsonl")
    epochs, bad_epochs = _read_epochs(path / "epochs.jsonl")
    return RunRecord(path, config, metrics, epochs,
                     {"metrics.jsonl": bad_metrics, "epochs.jsonl": bad_epochs}, config_error)


def _not_a_run(folder: Path) -> FileNotFoundError:
    """The one-line error for ``folder``, which holds no run: what it is, what a run holds."""
    holds = ("a run folder (what `python -m cglib train --out DIR` writes) holds config.json, "
             "metrics.jsonl, samples/ and generator.pt")
    state = files.describe_missing(folder)
    if state == "is a folder":
        return FileNotFoundError(f"{folder} holds no training run (no config.json and no "
                                 f"metrics.jsonl); {holds}")
    return FileNotFoundError(f"{folder} {state}; give a training run folder: {holds}")


def _read_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """The settings in ``path`` (a run's ``config.json``), or, when the file is missing,
    unreadable or holds something else than the settings (a JSON list, say), nothing and why,
    in words."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: not JSON, or not UTF-8
        return {}, f"The config.json could not be read ({error}); the settings are unknown"
    if not isinstance(config, dict):
        return {}, (f"The config.json holds a {type(config).__name__}, not the run's "
                    "settings; the settings are unknown")
    return config, None


def _read_metrics(path: Path) -> tuple[list[dict], int]:
    """The metric lines of ``metrics.jsonl`` one per step, oldest first (a repeated step keeps
    its newest line), and how many lines could not be read or named no step."""
    lines, bad = read_lines(path)
    newest = {line["step"]: line for line in lines if _is_int(line.get("step"))}
    stepless = sum(not _is_int(line.get("step")) for line in lines)
    return [newest[step] for step in sorted(newest)], bad + stepless


def _is_int(value: Any) -> bool:
    """True for an int that is no bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _read_epochs(path: Path) -> tuple[list[EpochRecord], int]:
    """The epochs of ``epochs.jsonl`` in the order they were first written, one per (phase,
    epoch): a line that repeats an epoch (a resumed run wrote it again) replaces it. Also how
    many lines could not be read."""
    lines, bad = read_lines(path)
    epochs: dict[tuple[str, int], EpochRecord] = {}
    for line in lines:
        try:
            epoch = EpochRecord.from_line(line)
        except ValueError:
            bad += 1
            continue
        epochs[epoch.phase, epoch.epoch] = epoch
    return list(epochs.values()), bad


def read_lines(path: str | os.PathLike) -> tuple[list[dict], int]:
    """The JSON objects of a JSON-lines file, and how many lines were not one (a line cut
    short by a killed process, say); nothing when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad
