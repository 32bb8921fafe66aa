"""Image files in and out, robustly: every module reads and writes images through here, and
turns them into the tensors the models take.

At every boundary an image is an H x W x 3 uint8 RGB NumPy array. :func:`read_image` turns
whatever a folder holds (EXIF-rotated phone photos, grayscale, palette, RGBA, CMYK, 16-bit)
into that, and raises :class:`ImageError` naming the file and the reason when it cannot.
:func:`write_image` writes atomically (:mod:`cglib.files`), so an interrupted job never leaves
half a file behind. Which files of a folder are images or videos is said here alone
(:data:`IMAGE_SUFFIXES`, :data:`VIDEO_SUFFIXES`), and folders are listed by one function
(:func:`list_files`: :func:`list_images`, :func:`list_media`).

The size rule for data sets (:func:`read_fitted`): an image is resized so that its short side
is the target size and centre-cropped to a square (:func:`fit_to_size`). Upscaling is allowed
up to 2x: an image whose short side is under half the target is rejected as too small.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cglib import files

#: File name endings that :func:`list_images` picks up (compared in lower case).
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
#: File name endings of videos (compared in lower case): what :func:`list_media` picks up
#: besides images, for data import (key frames) and cartoonizing.
VIDEO_SUFFIXES = (".avi", ".mkv", ".mov", ".mp4", ".webm")

#: Magic bytes of the formats above: a file that starts with one of these but does not decode
#: is called corrupt, anything else "not an image".
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"BM": "BMP",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


class ImageError(ValueError):
    """A file that cannot be used as an image. ``path`` is the file, ``reason`` says why
    (``"truncated (decoded about 60% of its rows)"``, ``"not an image (it holds text)"``,
    ``"too small: 10x10, need at least 128 on the short side"``, ...)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _format_of(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    for signature, name in _SIGNATURES.items():
        if head.startswith(signature):
            return name
    return None


def _not_an_image_reason(path: Path) -> str:
    """Why PIL could not identify ``path``: a corrupt image or not an image at all."""
    with open(path, "rb") as file:
        head = file.read(256)
    if not head:
        return "empty file (0 bytes)"
    known = _format_of(head)
    if known:
        return f"corrupt ({known} header, but the data cannot be decoded)"
    # A multi-byte character may be cut at the end of the head: ignore that, not NUL bytes.
    text = head.decode("utf-8", errors="ignore")
    if text and all(c.isprintable() or c.isspace() for c in text):
        preview = " ".join(text.split())[:30]
        return f"not an image (it holds text: {preview!r})"
    return "not an image (unknown format)"


def _decoded_fraction(image: Image.Image) -> float | None:
    """Fraction of rows a failed decode filled in, or None when it cannot be told.

    The decoder writes rows top-down into a zeroed buffer, so the last non-zero row marks how
    far it got (an image whose bottom is pure black reads as less). This looks at the partly
    filled buffer, which Pillow keeps after a failed ``load``; it is an estimate for the
    message only, so any failure here just leaves the percentage out.
    """
    try:
        rows = np.asarray(image.im).reshape(image.size[1], -1)
    except Exception:  # Pillow internals differ between versions; the estimate is optional
        return None
    filled = np.flatnonzero(rows.any(axis=1))
    return (filled[-1] + 1) / rows.shape[0] if filled.size else 0.0


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to H x W x 3 uint8 RGB: alpha composited on white, 16 bits to 8."""
    mode = image.mode
    if mode.startswith("I"):  # 16-bit ("I;16", "I;16B") or 32-bit integer gray: 0..65535
        gray = np.asarray(image, dtype=np.float64) / 257.0
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[:, :, 3:] / 255.0
        rgb = rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


#: The largest share of the memory available that one decoded image may take: a larger one is
#: refused before decoding (a header can claim any size, a "decompression bomb").
MEMORY_SHARE = 0.5


def memory_available() -> int:
    """Bytes of memory a new allocation can take now: Linux's ``MemAvailable``, else the
    machine's physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # Windows: no sysconf
        return 16 * 2**30


@contextlib.contextmanager
def _no_pixel_limit() -> Iterator[None]:
    """Pillow without its pixel limit (``Image.MAX_IMAGE_PIXELS``, about 89.5 megapixels):
    for a person's own photos, which may be larger; :func:`_check_memory` guards instead."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _check_memory(path: Path, size: tuple[int, int]) -> None:
    """ImageError for ``path`` when decoding ``size`` (width, height) as 8-bit RGB would take
    more than :data:`MEMORY_SHARE` of the memory available."""
    width, height = size
    needed, available = width * height * 3, memory_available()
    if needed > MEMORY_SHARE * available:
        raise ImageError(path, f"too large to decode: {width}x{height} pixels need "
                               f"{needed / 2**30:.1f} GiB, more than {MEMORY_SHARE:.0%} of the "
                               f"{available / 2**30:.1f} GiB of memory available; downsize it "
                               "with another program first")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header, at any size (before EXIF rotation);
    the exceptions of ``PIL.Image.open`` for a file that is not an image."""
    with _no_pixel_limit(), Image.open(path) as image:
        return image.size


def _draft(image: Image.Image, scale: float) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 of its size where that keeps it at least ``scale``
    times its size (Pillow's ``draft``): a large photo that is downsized anyway then needs a
    fraction of the memory and time. Other formats decode whole."""
    if image.format == "JPEG" and scale < 0.5:
        width, height = image.size
        image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))


def read_image(path: str | os.PathLike, max_side: int | None = None,
               short_side: int | None = None) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB, at any size that fits in memory.

    EXIF orientation is applied; grayscale, palette, CMYK and 16-bit images become 8-bit RGB;
    transparent images are composited on white. ``max_side``, ``short_side``: the caller
    downsizes the image to that longer or short side afterwards, so a JPEG may decode smaller,
    with that side still at least that (:func:`_draft`). Raises :class:`ImageError` (a
    ValueError) naming the file and the reason for a missing, empty, corrupt, truncated or
    non-image file, and for one whose decoded pixels would not fit in memory
    (:data:`MEMORY_SHARE`), before decoding it.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "no such file")
    try:
        with _no_pixel_limit():
            image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(path, _not_an_image_reason(path)) from None
    except Exception as error:  # a damaged header can raise nearly anything inside Pillow
        raise ImageError(path, f"corrupt ({error})") from None
    with image:
        width, height = image.size
        scales = [side / length for side, length in ((max_side, max(width, height)),
                                                     (short_side, min(width, height))) if side]
        if scales:
            _draft(image, max(scales))
        _check_memory(path, image.size)
        try:
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
        except OSError as error:
            if "truncated" not in str(error):
                raise ImageError(path, f"corrupt ({error})") from None
            fraction = _decoded_fraction(image)
            how_far = f" (decoded about {fraction:.0%} of its rows)" if fraction else ""
            raise ImageError(path, f"truncated{how_far}") from None
        except Exception as error:  # damaged data: zlib, struct, EXIF errors and the like
            raise ImageError(path, f"corrupt ({error})") from None


def decode_image(content: bytes, name: str) -> np.ndarray:
    """:func:`read_image` for the bytes of a file called ``name`` (an upload, say): H x W x 3
    uint8 RGB, or :class:`ImageError` naming ``name`` and the reason."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{Path(name).suffix}"
        path.write_bytes(content)
        try:
            return read_image(path)
        except ImageError as error:
            raise ImageError(name, error.reason) from None


def check_rgb(image: object, name: str = "the image") -> np.ndarray:
    """``image`` if it is an H x W x 3 uint8 RGB array, else ValueError saying what ``name``
    is instead."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3):
        what = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise ValueError(f"{name} is a {what}; expected an H x W x 3 uint8 RGB array")
    return image


#: The longest side each output format can hold, in pixels: WebP's limit, and libjpeg's.
MAX_SIDES = {".webp": 16383, ".jpg": 65500, ".jpeg": 65500}


def check_writable(path: str | os.PathLike, width: int, height: int) -> None:
    """:class:`ImageError` for the output ``path`` when its format (by suffix) cannot hold a
    ``width`` x ``height`` image (:data:`MAX_SIDES`), naming the limit and the fix."""
    path = Path(path)
    limit = MAX_SIDES.get(path.suffix.lower())
    if limit is not None and max(width, height) > limit:
        kind = path.suffix.lstrip(".").upper().replace("JPG", "JPEG").replace("WEBP", "WebP")
        raise ImageError(path, f"could not write {path}: {width}x{height} pixels do not fit "
                               f"in {kind}, which holds at most {limit} pixels a side; "
                               "choose another format (png)")


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an H x W x 3 uint8 RGB image; the format follows the suffix (png, jpg, webp, bmp).

    Written with :func:`cglib.files.atomic_write`, so a reader never sees half a file. Parent
    folders are created. Returns ``path``. An image the format cannot hold
    (:func:`check_writable`) or that cannot be encoded raises :class:`ImageError` (a
    ValueError) naming ``path``.
    """
    path = Path(path)
    check_rgb(image, f"cannot write {path}: the image")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(
            f"cannot write {path}: unknown image suffix; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    check_writable(path, image.shape[1], image.shape[0])
    ok, encoded = cv2.imencode(path.suffix, np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise ImageError(path, f"could not write {path}: OpenCV could not encode it as "
                               f"{path.suffix}")
    return files.write_bytes(path, encoded.tobytes(), durable=False)


def input_paths(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """What a person gave as inputs (one path, or a list or tuple of them) as a list of paths:
    a string is one path, never a sequence of one-character paths. ValueError for no input
    at all and for an empty path (``""``, spaces: an unset shell variable, say), which would
    otherwise mean the current folder, naming it and the fix."""
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not given:
        raise ValueError("no input given: name image or video files, or folders")
    for number, item in enumerate(given, 1):
        if not os.fspath(item).strip():
            which = f"input {number} of {len(given)}" if len(given) > 1 else "the input"
            raise ValueError(f"{which} is an empty path ({os.fspath(item)!r}; an unset "
                             "variable?); name an image or video file, or a folder (. for "
                             "the current one)")
    return [Path(item) for item in given]


def list_files(folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
               what: str = "images", recursive: bool = True) -> list[Path]:
    """Files in ``folder`` (and its subfolders) whose name ends in one of ``suffixes`` (any
    case), sorted by relative path; hidden files (``.name``: temporary files, macOS ``._``
    copies) are left out.

    Raises NotADirectoryError when ``folder`` is a file, and FileNotFoundError when it is
    missing (a broken link or a link loop said as such) or holds no such files, naming it,
    ``what`` belongs there and the fix.
    """
    folder = Path(folder)
    kinds = ", ".join(suffix[1:] for suffix in suffixes)
    if not folder.is_dir():
        state = files.describe_missing(folder)
        if state == "is a file":
            raise NotADirectoryError(f"{folder} is a file, not a folder; give the folder that "
                                     f"holds the {what}")
        raise FileNotFoundError(f"folder {folder} {state}; create it and put {what} ({kinds}) "
                                "in it")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = sorted(
        (path for path in candidates
         if path.suffix.lower() in suffixes and path.is_file()
         and not any(part.startswith(".") for part in path.relative_to(folder).parts)),
        key=lambda path: path.relative_to(folder).as_posix(),
    )
    if not found:
        where = " or its subfolders" if recursive else ""
        raise FileNotFoundError(f"folder {folder}{where} holds no {what}; put {what} ({kinds}) "
                                "in it")
    return found


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files (:data:`IMAGE_SUFFIXES`) in ``folder``: :func:`list_files`."""
    return list_files(folder, IMAGE_SUFFIXES, "images", recursive)


def list_media(folder: str | os.PathLike) -> list[Path]:
    """Image and video files (:data:`IMAGE_SUFFIXES`, :data:`VIDEO_SUFFIXES`) in ``folder``
    and its subfolders: :func:`list_files`."""
    return list_files(folder, IMAGE_SUFFIXES + VIDEO_SUFFIXES, "images or videos")


def is_video(path: Path) -> bool:
    """True for a file named as a video (:data:`VIDEO_SUFFIXES`, any case)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def fit_to_size(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so that the short side is ``size`` and centre-crop to ``size`` x ``size``.

    H x W x 3 uint8 in, ``size`` x ``size`` x 3 uint8 out. Shrinking uses area averaging
    (no aliasing), enlarging bicubic interpolation; an image already that size is returned
    as it is.
    """
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    scale = size / min(height, width)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (new_width, new_height), interpolation=interpolation)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return np.ascontiguousarray(resized[top:top + size, left:left + size])


def min_short_side(size: int) -> int:
    """The smallest short side accepted for target ``size``: half of it (upscale at most 2x)."""
    return (size + 1) // 2


def fit_or_reject(image: np.ndarray, size: int, source: str | os.PathLike) -> np.ndarray:
    """:func:`fit_to_size`, or :class:`ImageError` for ``source`` when the short side is under
    :func:`min_short_side` (reason ``"too small: 10x10, need at least 128 on the short side"``).
    """
    height, width = image.shape[:2]
    if min(height, width) < min_short_side(size):
        raise ImageError(
            source,
            f"too small: {width}x{height}, need at least {min_short_side(size)} on the short side",
        )
    return fit_to_size(image, size)


def read_fitted(path: str | os.PathLike, size: int) -> np.ndarray:
    """:func:`read_image`, then :func:`fit_or_reject`: ``size`` x ``size`` x 3 uint8 RGB.

    Raises :class:`ImageError` for unreadable files and for images too small for ``size``.
    """
    return fit_or_reject(read_image(path, short_side=size), size, path)


class ImageJob(NamedTuple):
    """One file of a folder job: read ``source`` fitted to ``size``, apply ``transform``
    (H x W x 3 uint8 RGB in and out; a module-level function, so that it pickles) if given,
    write ``target``."""

    source: Path
    target: Path
    size: int
    transform: Callable[[np.ndarray], np.ndarray] | None = None


def run_image_job(job: ImageJob) -> str | None:
    """Do ``job``; None when written, else the reason ``job.source`` was rejected.

    Never raises for a bad input file or a file that cannot be written, so that a pool of
    workers (which import only this module and the transform's) gets through a whole folder;
    a full or read-only device stops the job (:func:`cglib.files.write_rejection`).
    """
    try:
        image = read_fitted(job.source, job.size)
        write_image(job.target, job.transform(image) if job.transform else image)
    except ImageError as error:
        return error.reason
    except OSError as error:
        return files.write_rejection(error, job.target)
    return None


# -- between arrays and tensors --------------------------------------------------------------------

def to_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """H x W x 3 uint8 RGB (one image, or several of one size) -> (N, 3, H, W) float32 in
    [-1, 1], the range every cglib model takes."""
    batch = np.stack([images] if isinstance(images, np.ndarray) else list(images))
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_images(batch: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) float in [-1, 1] -> N H x W x 3 uint8 RGB images (rounded, clipped)."""
    pixels = ((batch.detach().float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1)
    return list(np.rint(pixels.cpu().numpy()).clip(0, 255).astype(np.uint8))
