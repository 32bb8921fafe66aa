"""A training run's folder: what it holds, how a run claims it, and never overwriting one.

::

    config.json         the run's settings (cglib.train.TrainConfig)
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
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO

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

    def record_epoch(self, generator: nn.Module, grid: np.ndarray | None, record: dict,
                     export: bool) -> None:
        """The end of epoch ``record["epoch"]`` (1-based) of phase ``record["phase"]``: the
        sample ``grid`` (H x W x 3 uint8 RGB, or None), ``generator`` as ``generator.pt`` and,
        when ``export``, under ``generators/``, and the epoch line: ``record`` with the paths
        of both."""
        phase, number = record["phase"], record["epoch"]
        samples = None if grid is None else self.save_samples(grid, phase, number)
        kept = self.export(generator, f"generators/{phase}-epoch{number:03d}.pt") \
            if export else None
        self.log_epoch({**record, "samples": samples, "generator": kept})
        self.export(generator, "generator.pt")

    def export(self, generator: nn.Module, name: str) -> str:
        """Save ``generator`` as ``name`` (relative to the run folder), loadable with
        :func:`cglib.pretrained.load_generator`; returns ``name``."""
        if self.writer:
            pretrained.save_generator(getattr(generator, "module", generator), self.path / name)
        return name


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


def read_metrics(folder: str | os.PathLike) -> list[dict]:
    """The metric lines of the run in ``folder``, one per step (:func:`one_per_step`)."""
    return one_per_step(read_lines(Path(folder) / "metrics.jsonl")[0])


def one_per_step(records: list[dict]) -> list[dict]:
    """Metric lines one per step, oldest first (a repeated step, from a run resumed before
    repeats were dropped, keeps its newest line); lines without a step are left out."""
    newest = {line["step"]: line for line in records if isinstance(line.get("step"), int)}
    return [newest[step] for step in sorted(newest)]


def read_epochs(folder: str | os.PathLike) -> list[dict]:
    """The epoch lines of the run in ``folder`` (``epochs.jsonl``), oldest first."""
    return read_lines(Path(folder) / "epochs.jsonl")[0]
