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
too long, no permission), is skipped and reported; a full disk or Ctrl-C stops the job, after
printing what was done.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from cglib import env, files, images, inference, pretrained, video
from cglib.data import VIDEO_SUFFIXES, Report

IMAGE_FORMATS = ("png", "jpg", "webp")


@dataclass(frozen=True)
class Job:
    """One input file and the output it gives."""

    source: Path
    target: Path


def is_video(path: Path) -> bool:
    """True for a file named as a video (:data:`cglib.data.VIDEO_SUFFIXES`, any case)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def list_media(folder: Path) -> list[Path]:
    """Images and videos under ``folder`` (:func:`cglib.images.list_files`)."""
    return images.list_files(folder, images.IMAGE_SUFFIXES + VIDEO_SUFFIXES, "images or videos")


def _inputs(inputs: Sequence[str | os.PathLike], out: Path, report: Report
            ) -> list[tuple[Path, Path]]:
    """(file, output folder) for ``inputs``: files, and folders searched recursively; inputs
    that do not exist, or folders without images or videos, go into ``report``."""
    found: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            try:
                found += [(path, out / path.relative_to(item).parent) for path in list_media(item)]
            except FileNotFoundError as error:
                report.rejected[str(item)] = str(error).removeprefix(f"folder {item} ")
        elif item.is_file():
            found.append((item, out))
        else:
            report.rejected[str(item)] = files.describe_missing(item)
    return found


def plan(inputs: Sequence[str | os.PathLike], out: Path, label: str, image_format: str,
         report: Report) -> list[Job]:
    """The jobs for ``inputs`` (files, and folders searched recursively), with unique output
    names (:func:`cglib.files.shared_names`); inputs that do not exist, or folders without
    images or videos, go into ``report``. The same file given twice runs once."""
    found = list(dict.fromkeys(_inputs(inputs, out, report)))
    suffixes = [video.output_suffix(source) if is_video(source) else f".{image_format}"
                for source, _ in found]
    shared = files.shared_names([source for source, _ in found],
                                [str(folder / f"{source.stem}{suffix}")
                                 for (source, folder), suffix in zip(found, suffixes,
                                                                     strict=True)])
    return [Job(source, folder / f"{_stem(source, both)}_{label}{suffix}")
            for (source, folder), suffix, both in zip(found, suffixes, shared, strict=True)]


def _stem(source: Path, shared: bool) -> str:
    """The output name's stem: the source's, with its suffix when another source shares it."""
    return f"{source.stem}-{source.suffix.lstrip('.').lower()}" if shared else source.stem


def named_rejections(inputs: Sequence[str | os.PathLike], report: Report) -> list[str]:
    """The entries of ``inputs`` themselves (files or folders named, not the files found in a
    folder) that ``report`` rejected."""
    named = {str(Path(item)) for item in inputs}
    return [name for name in report.rejected if name in named]


def _pixels(path: Path, max_side: int | None) -> float:
    """Input pixels of an image file, from its header (0 when it cannot be read)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # unreadable: read_image reports it properly when its turn comes
        return 0.0
    scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
    return width * height * scale * scale


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


def cartoonize_files(inputs: Sequence[str | os.PathLike], style: str | nn.Module,
                     out: str | os.PathLike, image_format: str = "png", overwrite: bool = False,
                     crf: int = 18, lossless: bool = False, label: str | None = None,
                     temporal: bool = True, **options) -> Report:
    """Cartoonize image and video files and folders into ``out`` with ``style``: a released
    style or a generator file (see :func:`cglib.pretrained.load`), or a generator in memory
    (a :class:`cglib.models.Generator`, say one just trained). Outputs are named
    ``<name>_<label>.<suffix>``; ``label`` defaults to the style's name (``hayao``, the file's
    stem) and is needed with a generator.

    ``options`` go to :func:`cglib.inference.cartoonize` (``tile``, ``device``, ``precision``,
    ``max_side``, ``keep_colors``, ``strength``). Videos are written as H.264 at quality
    ``crf``, or ``lossless``, ``temporal`` (without flicker) or frame by frame
    (:func:`cglib.video.cartoonize_video`). Progress bars count the
    photos' megapixels and each video's frames, with the time left. Returns a
    :class:`cglib.data.Report`: files written, outputs already there (skipped unless
    ``overwrite``), and inputs rejected with the reason. ``out`` and the settings are checked
    before anything runs (an existing file at ``out`` is an error).
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format={image_format!r}: use one of {', '.join(IMAGE_FORMATS)}")
    codec = "lossless" if lossless else "h264"
    video.check_encoding(codec, crf)
    out = files.output_folder(out)
    label = _label(style, label)
    report = Report()
    jobs = plan(inputs, out, label, image_format, report)
    # os.path.exists: a name too long to exist is one output that fails, not a job that stops
    todo = [job for job in jobs if overwrite or not os.path.exists(job.target)]
    report.up_to_date = len(jobs) - len(todo)
    if not todo:
        return report
    generator = _generator(style, options.pop("device", "auto"))
    videos = [job for job in todo if is_video(job.source)]
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


def _cartoonize_images(generator: nn.Module, jobs: list[Job], label: str, report: Report,
                       options: dict) -> None:
    """Run the image ``jobs`` under one progress bar in megapixels; into ``report``."""
    if not jobs:
        return
    sizes = [_pixels(job.source, options.get("max_side")) for job in jobs]
    with tqdm(total=round(sum(sizes) / 1e6, 2), unit="MP", desc=f"cartoonize ({label})",
              bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} MP [{elapsed}<{remaining}]") as bar:
        for job, size in zip(jobs, sizes, strict=True):
            start = bar.n
            try:
                cartoon = _cartoonize_image(generator, job.source, bar, options)
            except images.ImageError as error:
                report.rejected[str(job.source)] = error.reason
                continue
            finally:
                bar.n = start + size / 1e6
                bar.refresh()
            try:
                report.written.append(images.write_image(job.target, cartoon))
            except OSError as error:
                report.rejected[str(job.source)] = files.write_rejection(error, job.target)


def _cartoonize_video(generator: nn.Module, job: Job, report: Report, **settings) -> None:
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


def _cartoonize_image(generator: nn.Module, path: Path, bar: tqdm, options: dict) -> np.ndarray:
    """The cartoon of the image file ``path`` (H x W x 3 uint8 RGB); ImageError when it cannot
    be read or is too small (:class:`cglib.inference.TooSmallError`)."""
    return inference.cartoonize(generator, images.read_image(path),
                                progress=lambda pixels: bar.update(pixels / 1e6), **options)
