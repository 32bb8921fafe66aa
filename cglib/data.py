"""Data sets for CartoonGAN on disk: the folder layout, building it from your files, and
reading it.

A data set is a folder with four sub-folders of (by default 256x256) RGB images (see
``data/README.md``)::

    photos/             real photos p, for training
    photos_test/        held-out photos, never trained on
    cartoons/           cartoon images c of one style
    cartoons_smoothed/  the same cartoons with their edges smoothed, e (cglib.edges)

The three training domains are unpaired: :mod:`cglib.batches` draws them in three independent
orders, as the authors' code does. Folder jobs (:func:`smooth_folder`, :func:`import_images`)
run on all cores, skip outputs that are up to date, report every bad file by name with its
reason and never stop on one; :func:`fit_folder` is the general one: any folder of images,
fitted to the data set's size. A data set is read through :class:`ImageFolder` (a folder's
images as tensors, what the training streams draw from) and :func:`load_images` (a few fixed
images to follow), and checked before a run by :func:`check_dataset`.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cglib import files
from cglib.edges import smooth_edges
from cglib.images import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ImageError,
    ImageJob,
    fit_or_reject,
    input_paths,
    is_video,
    list_images,
    list_media,
    min_short_side,
    read_fitted,
    run_image_job,
    to_tensor,
    write_image,
)

DOMAINS = ("photos", "photos_test", "cartoons", "cartoons_smoothed")

#: Folder jobs with fewer files than this run in this process: starting worker processes
#: costs more than it saves.
PARALLEL_MIN_FILES = 64
#: Folders of fewer images load without a progress bar: they take a moment, and a notebook
#: that builds many trainers (the ablations) would otherwise show a bar per folder per run.
LOADING_BAR_FROM = 500

_HOW_TO_BUILD = (
    "build the demo set with `python -m cglib data demo`, import your own images with "
    "`python -m cglib data import SRC... --out ROOT --domain photos|cartoons`, or fetch "
    "the public one with `python -m cglib data fetch animegan --style hayao --out ROOT`"
)
_DOMAIN_FIX = {
    "photos": "put training photos there; " + _HOW_TO_BUILD,
    "photos_test": "put a few held-out photos there (data import --domain photos splits "
                   "them off with --test-fraction); " + _HOW_TO_BUILD,
    "cartoons": "put cartoon images of one style there; " + _HOW_TO_BUILD,
    "cartoons_smoothed": "build it from the cartoons with "
                         "`python -m cglib edges ROOT/cartoons ROOT/cartoons_smoothed`",
}


# ----------------------------------------------------------------------------------------------
# Folder jobs


@dataclass
class JobReport:
    """What a folder job did: files ``written``, outputs already ``up_to_date`` (skipped),
    ``rejected`` inputs (file name -> reason), and per video the sampled frames it kept or
    dropped (``videos``: video -> {"kept": n, "near-black": n, ...})."""

    written: list[Path] = field(default_factory=list)
    up_to_date: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    videos: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self, out: str | os.PathLike | None = None) -> str:
        """One line of counts (after ``out``, the output folder, when given), then a line per
        video and per rejected file."""
        where = "" if out is None else f"{out}: "
        lines = [f"{where}wrote {len(self.written)}, {self.up_to_date} already up to date, "
                 f"{len(self.rejected)} rejected"]
        for video, counts in self.videos.items():
            lines.append(f"  {video}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
        lines += [f"  skipped {name}: {reason}" for name, reason in self.rejected.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Counts, rejected files and video statistics, for a manifest."""
        return {"written": len(self.written), "up_to_date": self.up_to_date,
                "rejected": dict(self.rejected), "videos": dict(self.videos)}


def _up_to_date(target: Path, source: Path, size: int) -> bool:
    """True when ``target`` exists, is at least as new as ``source`` and is ``size`` x
    ``size`` (only its header is read)."""
    if not target.is_file() or target.stat().st_mtime_ns < source.stat().st_mtime_ns:
        return False
    try:
        with Image.open(target) as image:
            return image.size == (size, size)
    except Exception:  # unreadable: not up to date, written again
        return False


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _run_jobs(jobs: list[ImageJob], workers: int | None, report: JobReport,
              description: str) -> None:
    """Run ``jobs`` on ``workers`` processes (None: all cores), recording into ``report``.

    Workers are spawned, not forked: a fork of a process whose OpenCV or torch threads are
    running can deadlock. They import only :mod:`cglib.images` and the transform's module, and
    process the files in chunks, each with a single OpenCV thread.
    """
    workers = workers or cpu_cores()
    if workers > 1 and len(jobs) >= PARALLEL_MIN_FILES:
        context = multiprocessing.get_context("spawn")
        chunk = max(1, min(32, len(jobs) // (workers * 4)))
        with context.Pool(min(workers, len(jobs)), initializer=cv2.setNumThreads,
                          initargs=(1,)) as pool:
            reasons = list(tqdm(pool.imap(run_image_job, jobs, chunk), total=len(jobs),
                                desc=description, unit="image"))
    else:
        reasons = [run_image_job(job) for job in tqdm(jobs, desc=description, unit="image")]
    for job, reason in zip(jobs, reasons, strict=True):
        if reason is None:
            report.written.append(job.target)
        else:
            report.rejected[str(job.source)] = reason


def fit_folder(src: str | os.PathLike, dst: str | os.PathLike, size: int = 256,
               workers: int | None = None,
               transform: Callable[[np.ndarray], np.ndarray] | None = None,
               description: str | None = None) -> JobReport:
    """Fit every image under ``src`` to ``size`` x ``size`` (:func:`cglib.images.read_fitted`),
    apply ``transform`` if given (H x W x 3 uint8 RGB in and out; a module-level function, so
    that worker processes can run it), and write it as ``dst/<same relative path>.png``.

    Outputs newer than their source and of this size are skipped, so a second run only does
    what is new or changed; bad files are reported by name and reason in the returned
    :class:`JobReport`. A missing or empty ``src``, or a ``dst`` that is a file, raises at once.
    Temporaries that a killed run left in ``dst`` are removed
    (:func:`cglib.files.sweep_temporaries`).
    ``description`` labels the progress bar (default: ``src``'s name).
    """
    src = Path(src)
    sources = list_images(src)
    dst = files.output_folder(dst)
    report, jobs, claimed = JobReport(), [], {}
    for source in sources:
        target = dst / source.relative_to(src).with_suffix(".png")
        if target in claimed:
            report.rejected[str(source)] = f"same output name as {claimed[target]}"
            continue
        claimed[target] = source.name
        if _up_to_date(target, source, size):
            report.up_to_date += 1
        else:
            jobs.append(ImageJob(source, target, size, transform))
    for folder in sorted({target.parent for target in claimed}):
        files.sweep_temporaries(folder)  # what a killed earlier run left
    _run_jobs(jobs, workers, report, description or src.name)
    return report


def smooth_folder(src: str | os.PathLike, dst: str | os.PathLike, size: int = 256,
                  workers: int | None = None) -> JobReport:
    """Edge-smooth every image under ``src`` into ``dst`` (:func:`cglib.edges.smooth_edges`):
    :func:`fit_folder` with the paper's smoothing as its transform, so each image is fitted to
    ``size`` x ``size``, written as ``dst/<same relative path>.png``, skipped when up to date
    and reported when bad. A missing or empty ``src`` raises FileNotFoundError at once.
    """
    return fit_folder(src, dst, size, workers, smooth_edges,
                      f"smoothing edges of {Path(src).name}")


def write_manifest(path: str | os.PathLike, manifest: dict) -> None:
    """Write ``manifest`` as JSON indented by 2, keys sorted (:func:`cglib.files.write_json`)."""
    files.write_json(path, manifest, indent=2, sort_keys=True)


def read_manifest(root: str | os.PathLike) -> dict:
    """``root/manifest.json`` as a dict; empty when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(root) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------------------------
# Your own data: folders of images and film key frames


def key_frames(video: str | os.PathLike, every_seconds: float = 2.0, black_level: float = 20.0,
               fade_contrast: float = 10.0, duplicate_difference: float = 6.0,
               ) -> Iterator[tuple[float, np.ndarray, str]]:
    """Sample a video every ``every_seconds`` and judge each sample, as the authors cleaned film
    frames: yields ``(seconds, frame, verdict)``, frame H x W x 3 uint8 RGB, verdict ``"kept"``
    or why it is dropped:

    - ``"near-black"``: mean gray level under ``black_level`` (of 255);
    - ``"fade"``: contrast (standard deviation of the gray levels) under ``fade_contrast``:
      fades, blank frames and flat title cards;
    - ``"near-duplicate"``: within ``duplicate_difference`` gray levels (mean absolute
      difference of 32x32 gray thumbnails) of a frame already kept from this video.

    Raises :class:`cglib.images.ImageError` when the video cannot be opened or decoded.
    """
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise ImageError(video, "cannot open the video (damaged file or unknown codec)")
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if math.isfinite(fps) and fps > 0 else 25.0  # a missing rate reads as 0
        step = max(1, round(every_seconds * fps))
        kept: list[np.ndarray] = []
        index = sampled = 0
        while capture.grab():
            if index % step == 0:
                ok, frame = capture.retrieve()
                if ok:
                    sampled += 1
                    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                    thumbnail = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
                    thumbnail = thumbnail.astype(np.float32)
                    if thumbnail.mean() < black_level:
                        verdict = "near-black"
                    elif thumbnail.std() < fade_contrast:
                        verdict = "fade"
                    elif kept and np.abs(np.stack(kept) - thumbnail).mean(axis=(1, 2)).min() \
                            < duplicate_difference:
                        verdict = "near-duplicate"
                    else:
                        verdict = "kept"
                        kept.append(thumbnail)
                    yield index / fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), verdict
            index += 1
    finally:
        capture.release()
    if sampled == 0:
        raise ImageError(video, "no frame could be decoded (damaged file or unknown codec)")


def _media(source: Path) -> list[tuple[Path, str]]:
    """Images and videos under ``source`` (a folder, searched recursively, or one file), each
    with the stem of its output names: ``<source name>__<sub>__<folders>__<file stem>``."""
    if source.is_file():
        if not is_video(source) and source.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(
                f"{source} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a video "
                f"({', '.join(VIDEO_SUFFIXES)}); pass folders, images or videos"
            )
        return [(source, source.stem)]
    found = list_media(source)
    return [(path, "__".join((source.name, *path.relative_to(source).with_suffix("").parts)))
            for path in found]


def _stable_fraction(name: str) -> float:
    """A number in [0, 1) fixed by ``name`` alone (not by the order of the files)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) / 16**12


def import_images(sources: str | os.PathLike | Sequence[str | os.PathLike],
                  out: str | os.PathLike, domain: str, size: int = 256,
                  test_fraction: float = 0.1, every_seconds: float = 2.0,
                  workers: int | None = None) -> JobReport:
    """Bring your own photos or cartoons into the data set at ``out``.

    ``sources``: folders (searched recursively for images and videos), image files or video
    files (one path or a list: :func:`cglib.images.input_paths`). Images are fitted to
    ``size`` x ``size`` (:func:`cglib.images.read_fitted`); videos give their key frames
    (:func:`key_frames`, one sample every ``every_seconds``), fitted the same way. Outputs
    are PNGs named after their source. ``domain="photos"``: of the photos new in this run,
    ``test_fraction`` (at least one when two or more are new) go to ``photos_test/``, chosen
    by a hash of their names, the rest to ``photos/``.
    ``domain="cartoons"``: all go to ``cartoons/``, and ``cartoons_smoothed/`` is brought up to
    date. A run is recorded in ``out/manifest.json`` (counts, and every rejected file with
    its reason). Missing sources raise FileNotFoundError before anything is written.
    """
    if domain not in ("photos", "cartoons"):
        raise ValueError(f"domain={domain!r}: import into 'photos' or 'cartoons'")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction={test_fraction} must be between 0 and 1")
    sources = input_paths(sources)
    media = _named_media(sources)
    out = files.output_folder(out, "data set folder")
    folders = [out / "photos", out / "photos_test"] if domain == "photos" else [out / domain]
    for folder in folders:
        files.sweep_temporaries(folder)  # what a killed earlier run left
    report = JobReport()
    created = _import_media(media, folders, size, every_seconds, workers, report,
                            f"importing {domain}")
    new = [path for path in report.written if path in created]
    moved = _move_to_test(new, folders[1], test_fraction) if domain == "photos" else 0
    run = {"domain": domain, "sources": [str(source) for source in sources], "size": size,
           "test_fraction": test_fraction, "every_seconds": every_seconds,
           "moved_to_test": moved, **report.to_dict()}
    if domain == "cartoons":
        smoothing = smooth_folder(out / "cartoons", out / "cartoons_smoothed", size, workers)
        run["smoothing"] = smoothing.to_dict()
    manifest = read_manifest(out)
    manifest.setdefault("imports", []).append(run)
    manifest["counts"] = {name: count_images(out / name) for name in DOMAINS}
    write_manifest(out / "manifest.json", manifest)
    return report


def _named_media(sources: list[Path]) -> list[tuple[Path, str]]:
    """The images and videos of ``sources`` (:func:`_media`), each once, with the stem of its
    output names; files that would share a stem (``x.jpg``, ``x.png``) keep their suffix in
    it (``x-jpg``, ``x-png``)."""
    media = list(dict.fromkeys(item for source in sources for item in _media(source)))
    shared = files.shared_names([path for path, _ in media], [stem for _, stem in media])
    return [(path, f"{stem}-{path.suffix.lstrip('.').lower()}" if both else stem)
            for (path, stem), both in zip(media, shared, strict=True)]


def _import_media(media: list[tuple[Path, str]], folders: list[Path], size: int,
                  every_seconds: float, workers: int | None, report: JobReport,
                  description: str) -> set[Path]:
    """Write each image of ``media`` and the kept key frames of each video, fitted to
    ``size``, into ``folders`` (recording into ``report``); returns the outputs that no
    earlier run had written."""
    created: set[Path] = set()

    def target_for(name: str, source: Path) -> Path | None:
        """Where ``name`` goes, or None when it is already there and up to date. An output
        of an earlier run stays in its split; a new one starts in the first folder."""
        existing = [folder / name for folder in folders if (folder / name).is_file()]
        if existing and _up_to_date(existing[0], source, size):
            report.up_to_date += 1
            return None
        if existing:
            return existing[0]
        created.add(folders[0] / name)
        return folders[0] / name

    jobs = [ImageJob(path, target, size) for path, stem in media
            if not is_video(path) and (target := target_for(f"{stem}.png", path))]
    _run_jobs(jobs, workers, report, description)
    videos = [(path, stem) for path, stem in media if is_video(path)]
    for path, stem in tqdm(videos, desc="reading videos", unit="video", disable=not videos):
        _import_video(path, stem, size, every_seconds, target_for, report)
    return created


def _move_to_test(new: list[Path], test: Path, fraction: float) -> int:
    """Move ``fraction`` of the photos ``new`` (at least one when there are two or more),
    chosen by a hash of their names, into the folder ``test``; returns how many."""
    if len(new) < 2 or fraction == 0:
        return 0
    moved = min(len(new), max(1, round(len(new) * fraction)))
    test.mkdir(parents=True, exist_ok=True)
    for path in sorted(new, key=lambda path: _stable_fraction(path.name))[:moved]:
        os.replace(path, test / path.name)
    return moved


def count_images(folder: Path) -> int:
    """How many images ``folder`` holds (:func:`cglib.images.list_images`); 0 when it does not
    exist."""
    try:
        return len(list_images(folder))
    except FileNotFoundError:
        return 0


def _import_video(video: Path, stem: str, size: int, every_seconds: float,
                  target_for: Callable[[str, Path], Path | None], report: JobReport) -> None:
    """Write the kept key frames of ``video`` as ``<stem>__<milliseconds>ms.png``."""
    counts: Counter[str] = Counter()
    try:
        for seconds, frame, verdict in key_frames(video, every_seconds):
            counts[verdict] += 1
            if verdict != "kept":
                continue
            target = target_for(f"{stem}__{round(seconds * 1000):09d}ms.png", video)
            if target is not None:
                write_image(target, fit_or_reject(frame, size, video))
                report.written.append(target)
    except ImageError as error:  # unreadable, or its frames are too small
        report.rejected[str(video)] = error.reason
    report.videos[str(video)] = dict(sorted(counts.items()))


# ----------------------------------------------------------------------------------------------
# Checking a data set


def check_image_sizes(root: str | os.PathLike, domains: Sequence[str], size: int) -> None:
    """ValueError, before any work, when no image of one of ``domains`` under ``root`` is large
    enough to train at ``size`` (a short side of at least
    :func:`cglib.images.min_short_side`), naming the folder, its largest image and the fix.
    Only headers are read, and each domain's only up to its first image that is large
    enough; files whose header cannot be read are left to the loader's report."""
    need = min_short_side(size)
    for domain in domains:
        largest: tuple[int, int] | None = None  # (width, height)
        for path in list_images(Path(root) / domain):
            try:
                with Image.open(path) as image:
                    found = image.size
            except Exception:  # unreadable: the loader reports it
                continue
            if min(found) >= need:
                break
            if largest is None or min(found) > min(largest):
                largest = found
        else:
            if largest is not None:
                fits = min(largest) * 2 // 4 * 4
                lower = (f"lower image_size (--image-size) to {fits} or less, or "
                         if fits >= 16 else "")
                raise ValueError(
                    f"{Path(root) / domain}: every image is too small for image_size {size} "
                    f"(each needs at least {need} pixels on its short side; the largest is "
                    f"{largest[0]}x{largest[1]}): {lower}add larger images")


def check_dataset(root: str | os.PathLike) -> dict[str, int]:
    """Images per domain of the data set at ``root`` (keys :data:`DOMAINS`).

    Raises FileNotFoundError naming the folder that is missing or empty, what belongs there
    and the command that builds it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data set folder {root} does not exist; {_HOW_TO_BUILD}")
    counts = {}
    for domain in DOMAINS:
        try:
            counts[domain] = len(list_images(root / domain))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"data set {root} has no {domain} images: {root / domain} is missing or "
                f"empty; {_DOMAIN_FIX[domain]}"
            ) from None
    return counts


# ----------------------------------------------------------------------------------------------
# Reading a data set: its images as tensors, and a few fixed images


class ImageFolder(Dataset):
    """The images under ``folder`` as a torch Dataset; items are (3, ``image_size``,
    ``image_size``) float32 tensors in [-1, 1], RGB.

    Images of another size are fitted (:func:`cglib.images.read_fitted`). ``in_memory``: read
    every image once into one uint8 array (N x S x S x 3: 196 KB per 256x256 image) and serve
    from there; unreadable files are then left out with a warning. Otherwise a file that fails
    to read later (it was fine when listed) is reported once per process with a warning naming
    it, and the next readable image is served in its place, so training goes on.
    """

    def __init__(self, folder: str | os.PathLike, image_size: int = 256,
                 in_memory: bool = False) -> None:
        self.folder = Path(folder)
        self.files = list_images(self.folder)
        self.image_size = image_size
        self.unreadable: set[int] = set()
        self.images: np.ndarray | None = None
        if in_memory:
            self._load_all()

    def _load_all(self) -> None:
        images, kept = [], []
        for path in tqdm(self.files, desc=f"loading {self.folder.name}", unit="image",
                         disable=len(self.files) < LOADING_BAR_FROM):
            try:
                images.append(read_fitted(path, self.image_size))
                kept.append(path)
            except ImageError as error:
                warnings.warn(f"{error}; it is left out of {self.folder}", stacklevel=3)
        if not images:
            raise FileNotFoundError(f"no readable image in {self.folder}")
        self.files, self.images = kept, np.stack(images)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as ``image_size`` x ``image_size`` x 3 uint8 RGB, or the next
        readable one when it cannot be read (see the class notes)."""
        if self.images is not None:
            return self.images[index]
        for offset in range(len(self.files)):
            candidate = (index + offset) % len(self.files)
            if candidate in self.unreadable:
                continue
            try:
                return read_fitted(self.files[candidate], self.image_size)
            except ImageError as error:
                self.unreadable.add(candidate)
                warnings.warn(f"{error}; another image is used in its place", stacklevel=2)
        raise RuntimeError(f"no image under {self.folder} can be read any more")

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_tensor(self.read(index))[0]


def load_images(folder: str | os.PathLike, count: int, image_size: int) -> list[np.ndarray]:
    """The first ``count`` readable images of ``folder`` in sorted order (fewer if it holds
    fewer), each ``image_size`` x ``image_size`` x 3 uint8 RGB: fixed photos to follow during
    training. Unreadable files are skipped with a warning."""
    found = []
    for path in list_images(folder):
        if len(found) == count:
            break
        try:
            found.append(read_fitted(path, image_size))
        except ImageError as error:
            warnings.warn(f"{error}; it is skipped", stacklevel=2)
    return found
