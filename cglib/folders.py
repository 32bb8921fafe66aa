"""Cartoonizing your files: photos, videos and folders of them in, cartoons out, as
``python -m cglib cartoonize`` does it.

Each input file gives ``<out>/<relative folder>/<name>_<style>.<suffix>``: the image format
asked for (``png``) for a photo; ``mp4`` or ``mkv`` for a video, after the input's container
(:func:`cglib.video.output_suffix`: its sound is then copied exactly). Nothing is lost and
nothing is overwritten by accident: outputs are written atomically, one at a time, so an
interrupted job keeps every finished cartoon, and a second run into the same folder skips what
is already there (``overwrite=True`` redoes it). Two inputs that would share an output name
(``x.jpg`` and ``x.png``) both keep their source suffix in it (``x-jpg_hayao.png``,
``x-png_hayao.png``). A file that cannot be read, or whose output cannot be written (a name
too long, no permission, a side too long for the format), is skipped and reported; a full
disk, Ctrl-C or SIGTERM stops the job, after printing what was done. The output folder and
the cartoons in it are never read back as inputs, even when ``out`` is the input folder or
lies inside it; hidden temporaries that a killed run left beside the outputs are removed by
the next run (:func:`cglib.files.sweep_temporaries`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from cglib import env, files, images, inference, pretrained, video
from cglib.data import JobReport

IMAGE_FORMATS = ("png", "jpg", "webp")


@dataclass(frozen=True)
class Job:
    """One input file and the output it gives."""

    source: Path
    target: Path


class _Found(NamedTuple):
    """A file to cartoonize, the folder its output goes to, and whether it was named itself
    (not found in a folder)."""

    source: Path
    folder: Path
    named: bool


def _inputs(inputs: list[Path], out: Path, report: JobReport) -> list[_Found]:
    """The files of ``inputs``: files, and folders searched recursively, leaving out the
    output folder ``out`` when it lies inside one; inputs that do not exist, or folders
    without images or videos, go into ``report``."""
    found: list[_Found] = []
    for item in inputs:
        if item.is_dir():
            try:
                media = images.list_media(item)
            except FileNotFoundError as error:
                report.rejected[str(item)] = str(error).removeprefix(f"folder {item} ")
                continue
            # --out inside the folder: its cartoons are no inputs (nor, next time, theirs)
            within = out != item.resolve() and out.is_relative_to(item.resolve())
            found += [_Found(path, out / path.relative_to(item).parent, False) for path in media
                      if not (within and path.resolve().is_relative_to(out))]
        elif item.is_file():
            found.append(_Found(item, out, True))
        else:
            report.rejected[str(item)] = files.describe_missing(item)
    return found


def _without_outputs(found: list[_Found], label: str, suffixes: list[str]) -> list[_Found]:
    """``found`` without the files found in a folder that are the outputs of other files
    found (``--out`` the input folder itself: a rerun does not cartoonize its cartoons)."""
    outputs = {(entry.folder / f"{stem}_{label}{suffix}").resolve()
               for entry, suffix in zip(found, suffixes, strict=True)
               for stem in (_stem(entry.source, False), _stem(entry.source, True))}
    return [entry for entry in found if entry.named or entry.source.resolve() not in outputs]


def _suffixes(found: list[_Found], image_format: str) -> list[str]:
    """The output suffix of each file found: the image format's, or the video's container's."""
    return [video.output_suffix(entry.source) if images.is_video(entry.source)
            else f".{image_format}" for entry in found]


def plan(inputs: str | os.PathLike | Sequence[str | os.PathLike], out: Path, label: str,
         image_format: str, report: JobReport) -> list[Job]:
    """The jobs for ``inputs`` (one path or a list: files, and folders searched recursively;
    :func:`cglib.images.input_paths`) into the output folder ``out`` (absolute), with unique
    output names (:func:`cglib.files.shared_names`); inputs that do not exist, or folders
    without images or videos, go into ``report``. The same file given twice runs once.
    Outputs are never inputs: ``out`` is left out of a folder that holds it, and a folder's
    files that are the outputs of its other files are left out."""
    unique: dict[tuple[Path, Path], _Found] = {}
    for entry in _inputs(images.input_paths(inputs), out, report):
        if entry.named or (entry.source, entry.folder) not in unique:
            unique[entry.source, entry.folder] = entry
    found = list(unique.values())
    found = _without_outputs(found, label, _suffixes(found, image_format))
    suffixes = _suffixes(found, image_format)
    shared = files.shared_names([entry.source for entry in found],
                                [str(entry.folder / f"{entry.source.stem}{suffix}")
                                 for entry, suffix in zip(found, suffixes, strict=True)])
    return [Job(entry.source, entry.folder / f"{_stem(entry.source, both)}_{label}{suffix}")
            for entry, suffix, both in zip(found, suffixes, shared, strict=True)]


def _stem(source: Path, shared: bool) -> str:
    """The output name's stem: the source's, with its suffix when another source shares it."""
    return f"{source.stem}-{source.suffix.lstrip('.').lower()}" if shared else source.stem


def named_rejections(inputs: str | os.PathLike | Sequence[str | os.PathLike], report: JobReport
                     ) -> list[str]:
    """The entries of ``inputs`` themselves (files or folders named, not the files found in a
    folder) that ``report`` rejected."""
    named = {str(item) for item in images.input_paths(inputs)}
    return [name for name in report.rejected if name in named]


def _output_size(path: Path, max_side: int | None) -> tuple[int, int] | None:
    """(width, height) of the cartoon of the image file ``path``, from its header (None when
    it cannot be read: :func:`cglib.images.read_image` reports it when its turn comes)."""
    try:
        width, height = images.image_size(path)
    except Exception:  # unreadable: reported properly later
        return None
    return inference.shrunk_size(width, height, max_side)


def _label(style: str | nn.Module, label: str | None) -> str:
    """The name the outputs carry: ``label``, else ``style``'s (a released style, or a
    generator file's stem); ValueError for a generator without a label, or a label that names
    folders."""
    if label is None:
        if isinstance(style, nn.Module):
            raise ValueError("style is a generator: give a label too, the name its outputs "
                             "carry (<name>_<label>.png), e.g. label='mine'")
        return style.lower() if style.lower() in pretrained.STYLES else Path(style).stem
    if label in ("", ".", "..") or Path(label).name != label:
        raise ValueError(f"label={label!r}: give a name for the outputs without folders, "
                         "e.g. 'mine'")
    return label


def _generator(style: str | nn.Module, device: str) -> nn.Module:
    """``style`` loaded (:func:`cglib.pretrained.load`), or the generator given, on ``device``
    (:func:`cglib.env.pick_device`)."""
    device = env.pick_device(device)
    if isinstance(style, nn.Module):
        return style.to(device)
    return pretrained.load(style, device=device)


def cartoonize_files(inputs: str | os.PathLike | Sequence[str | os.PathLike],
                     style: str | nn.Module, out: str | os.PathLike, image_format: str = "png",
                     overwrite: bool = False, crf: int = 18, lossless: bool = False,
                     label: str | None = None, temporal: bool = True, **options) -> JobReport:
    """Cartoonize image and video files and folders (``inputs``: one path or a list of them,
    :func:`cglib.images.input_paths`) into ``out`` with ``style``: a released style or a
    generator file (see :func:`cglib.pretrained.load`), or a generator in memory (a
    :class:`cglib.models.Generator`, say one just trained). Outputs are named
    ``<name>_<label>.<suffix>``; ``label`` defaults to the style's name (``hayao``, the file's
    stem) and is needed with a generator.

    ``options`` go to :func:`cglib.inference.cartoonize` (``tile``, ``device``, ``precision``,
    ``max_side``, ``keep_colors``, ``strength``). Videos are written as H.264 at quality
    ``crf``, or ``lossless``, ``temporal`` (without flicker) or frame by frame
    (:func:`cglib.video.cartoonize_video`). Progress bars count the
    photos' megapixels and each video's frames, with the time left. Returns a
    :class:`cglib.data.JobReport`: files written, outputs already there (skipped unless
    ``overwrite``), and inputs rejected with the reason. ``out`` and the settings are checked
    before anything runs (an existing file at ``out`` is an error).
    """
    inputs = images.input_paths(inputs)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format={image_format!r}: use one of {', '.join(IMAGE_FORMATS)}")
    codec = "lossless" if lossless else "h264"
    video.check_encoding(codec, crf)
    out = files.output_folder(out)
    label = _label(style, label)
    report = JobReport()
    jobs = plan(inputs, out, label, image_format, report)
    for folder in sorted({job.target.parent for job in jobs}):
        files.sweep_temporaries(folder)  # what a killed earlier run left
    # os.path.exists: a name too long to exist is one output that fails, not a job that stops
    todo = [job for job in jobs if overwrite or not os.path.exists(job.target)]
    report.up_to_date = len(jobs) - len(todo)
    if not todo:
        return report
    generator = _generator(style, options.pop("device", "auto"))
    videos = [job for job in todo if images.is_video(job.source)]
    try:
        _cartoonize_images(generator, [job for job in todo if job not in videos], label, report,
                           options)
        for job in videos:
            _cartoonize_video(generator, job, report, overwrite=overwrite, crf=crf, codec=codec,
                              temporal=temporal, **options)
    except BaseException:  # a full disk, Ctrl-C: say what is done before the error is told
        print(f"stopped before the end; done so far:\n{report.summary(out)}")
        raise
    return report


def _cartoonize_images(generator: nn.Module, jobs: list[Job], label: str, report: JobReport,
                       options: dict) -> None:
    """Run the image ``jobs`` under one progress bar in megapixels; into ``report``. An image
    whose cartoon the output format cannot hold (:func:`cglib.images.check_writable`) is
    rejected before it runs."""
    if not jobs:
        return
    sizes = [_output_size(job.source, options.get("max_side")) for job in jobs]
    megapixels = [size[0] * size[1] / 1e6 if size else 0.0 for size in sizes]
    with tqdm(total=sum(megapixels), unit="MP", desc=f"cartoonize ({label})",
              bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} MP [{elapsed}<{remaining}]") as bar:
        for job, size, share in zip(jobs, sizes, megapixels, strict=True):
            end = bar.n + share
            try:
                if size is not None:
                    images.check_writable(job.target, *size)
                cartoon = _cartoonize_image(generator, job.source, bar, end, options)
                report.written.append(images.write_image(job.target, cartoon))
            except images.ImageError as error:
                report.rejected[str(job.source)] = error.reason
            except OSError as error:
                report.rejected[str(job.source)] = files.write_rejection(error, job.target)
            finally:
                bar.n = end
                bar.refresh()


def _cartoonize_video(generator: nn.Module, job: Job, report: JobReport, **settings) -> None:
    """Run a video job (``settings``: see :func:`cglib.video.cartoonize_video`), with its own
    progress bar of frames; into ``report``."""
    try:
        video.cartoonize_video(generator, job.source, job.target, **settings)
    except video.VideoError as error:
        report.rejected[str(job.source)] = error.reason
        return
    except OSError as error:
        report.rejected[str(job.source)] = files.write_rejection(error, job.target)
        return
    report.written.append(job.target)


def _cartoonize_image(generator: nn.Module, path: Path, bar: tqdm, end: float, options: dict
                      ) -> np.ndarray:
    """The cartoon of the image file ``path`` (H x W x 3 uint8 RGB), its progress on ``bar``
    up to ``end`` megapixels at most; ImageError when it cannot be read or is too small
    (:class:`cglib.inference.TooSmallError`)."""
    photo = images.read_image(path, max_side=options.get("max_side"))
    return inference.cartoonize(
        generator, photo, progress=lambda pixels: bar.update(min(pixels / 1e6, end - bar.n)),
        **options)
