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

A folder that holds a run is never written into by another run by accident: a new run there
is refused unless it resumes (``resume=True``, ``--resume``) or asks to ``overwrite``, which
moves the old run aside to ``<folder>.replaced-<time>`` rather than deleting anything. On a
resume, the metric lines after the checkpoint's step are dropped, so the files hold each step
once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

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


def claim(folder: str | os.PathLike, resume: bool, overwrite: bool) -> Path:
    """The absolute run folder for a new run or a resumed one, checked before any work.

    A folder holding a run is refused unless ``resume`` (continue it) or ``overwrite`` (move
    it aside first, printed). A path that is a file is refused.
    """
    folder = Path(folder).expanduser()
    if not resume and holds_run(folder):
        if not overwrite:
            raise FileExistsError(
                f"{folder} holds a training run already; to continue it use --resume "
                "(resume=True), to start another choose a new --out, or give --overwrite "
                "(overwrite=True) to move the old run aside and start afresh")
        print(f"moved the run in {folder} to {move_aside(folder.resolve())}")
    return files.output_folder(folder, "run folder")


class RunFolder:
    """The files of one run in ``path``. ``writer``: False on all processes but the first of
    a multi-process run, which then write nothing (every method is a no-op)."""

    def __init__(self, path: Path, writer: bool = True) -> None:
        self.path, self.writer = path, writer
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
