"""Cartoonizing photos of any size: exactly the authors' network, whole or in tiles, in bounded
memory, fast on a CPU.

The authors' test code runs the generator on the whole photo, unpadded: their network takes any
size, and where a side is not a multiple of 4 its output is up to 3 pixels larger, the picture
in its top-left corner (:meth:`cglib.models.Generator.forward`). :func:`cartoonize` does exactly
that, and crops.

A large photo does not fit in memory at once, and cutting it into tiles that each run through
the generator would change the answer: every instance normalization would use the statistics
of its tile instead of the photo's (visible tone shifts from tile to tile). Here tiles never
change the answer: photos of more than a tile's area run through
:func:`cglib.tiling.tiled_forward`, which takes each normalization's statistics from the whole
image, summed over its tiles (how, and why that is exact: :mod:`cglib.tiling`). Accelerator
memory is bounded by one tile, and the result equals the whole-image forward up to float
rounding.

Images are H x W x 3 uint8 RGB arrays at this module's boundary; :func:`generate` is the same
at the tensor level, (N, 3, H, W) float in [-1, 1].
"""

from __future__ import annotations

import contextlib
import copy
import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from cglib import env, images
from cglib.tiling import ProgressCallback, tiled_forward

#: The smallest side cartoonize takes: the authors' network needs 5 pixels (the residual
#: blocks' reflection padding at a quarter of the resolution); under 8 is not a photo.
MIN_SIDE = 8

#: Tile side in pixels on a CPU: images of up to this many pixels squared (1080p frames
#: included) run whole, larger ones in tiles of about this area. One tile then needs about
#: 2.5 GB in fp32 (half in bf16), whatever the photo's size.
CPU_TILE = 1536

#: Bytes of accelerator memory per input pixel that a whole-image forward needs at its peak,
#: in fp32 (the 64-channel full-resolution maps, a few alive at once); half in bf16 and fp16.
BYTES_PER_PIXEL = 1100

#: Tiles are never smaller than this; a device that runs out of memory below it is refused.
MIN_TILE = 64


# -- settings -------------------------------------------------------------------------------------

def default_tile(device: torch.device) -> int:
    """The tile side for ``device``: :data:`CPU_TILE` on a CPU; on a CUDA GPU, from the free
    memory: half of it for the forward, at :data:`BYTES_PER_PIXEL` per pixel."""
    if device.type != "cuda":
        return CPU_TILE
    free, _ = torch.cuda.mem_get_info(device)
    return max(MIN_TILE, int(math.sqrt(free / 2 / BYTES_PER_PIXEL)))


@dataclass(frozen=True)
class Settings:
    """How a generator runs: where, in which precision, with which tile.

    bf16 on a CPU runs a bf16 copy of the generator (weights and activations in bf16, each
    instance normalization accumulating in fp32, maps channels-last): 8 to 15% faster than
    autocast there, which casts every weight on every call, and channels-last another 14 to 20%
    (:func:`_bf16_copy`). Elsewhere mixed precision is autocast.
    """

    device: torch.device
    precision: str
    tile: int

    @classmethod
    def resolve(cls, generator: nn.Module, device: str | torch.device | None, precision: str,
                tile: int | str) -> Settings:
        """``device``: None keeps the generator's; ``precision``: see
        :func:`cglib.env.inference_precision`;
        ``tile``: a side in pixels (from :data:`MIN_TILE`) or ``"auto"`` (:func:`default_tile`).
        """
        device = next(generator.parameters()).device if device is None else torch.device(device)
        if tile == "auto":
            tile = default_tile(device)
        if not isinstance(tile, int) or tile < MIN_TILE:
            raise ValueError(f"tile={tile!r}: give a side in pixels of at least {MIN_TILE}, "
                             "or 'auto'")
        return cls(device, env.inference_precision(precision, device), tile)

    @property
    def cast(self) -> bool:
        """True where the generator runs as a bf16 copy instead of under autocast."""
        return self.device.type == "cpu" and self.precision == "bf16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the generator's arithmetic runs in: autocast in the settings' precision,
        or nothing (fp32, or the bf16 copy)."""
        if self.cast:
            return contextlib.nullcontext()
        return env.autocast(self.device, self.precision)


#: bf16 copies of generators, kept while the generator lives and its weights do not change.
_CASTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _bf16_copy(generator: nn.Module) -> nn.Module:
    """A bf16 copy of ``generator`` in eval mode, made once per state of its weights (every
    in-place change of a parameter bumps its version): channels-last, its instance
    normalizations :class:`ChannelsLastNorm`. On the CPU measured (AVX512-BF16) a 854 x 480
    frame took 1.84 s against 2.14 s in the default layout: the transposed and the
    full-resolution convolutions run three times as fast."""
    version = tuple((p.data_ptr(), p._version) for p in generator.parameters())
    kept = _CASTS.get(generator)
    if kept is None or kept[0] != version:
        copied = copy.deepcopy(generator).to(torch.bfloat16)
        for parent in list(copied.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.InstanceNorm2d:
                    setattr(parent, name, ChannelsLastNorm.like(child))
        kept = (version, copied.eval().to(memory_format=torch.channels_last))
        _CASTS[generator] = kept
    return kept[1]


class ChannelsLastNorm(nn.InstanceNorm2d):
    """An instance normalization computed, image by image, as a batch normalization of that
    image alone: the same formula (per-channel statistics over H x W, biased variance), in
    the layout of its input. ``nn.InstanceNorm2d`` first copies a channels-last map to the
    default layout: at 854 x 480 with 64 channels in bf16, 115 ms against 20."""

    @classmethod
    def like(cls, norm: nn.InstanceNorm2d) -> ChannelsLastNorm:
        """A ChannelsLastNorm sharing ``norm``'s settings and weights."""
        made = cls(norm.num_features, norm.eps, affine=norm.affine)
        made.weight, made.bias = norm.weight, norm.bias
        return made

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> the same, each image normalized with its own statistics."""
        if len(x) > 1:
            return torch.cat([self(image[None]) for image in x])
        return nn.functional.batch_norm(x, None, None, self.weight, self.bias, True, 0.0,
                                        self.eps)


@contextlib.contextmanager
def evaluating(generator: nn.Module, settings: Settings) -> Iterator[nn.Module]:
    """The module to run: the generator on the settings' device (moved there: moving it back
    and forth would cost more than it saves) in eval mode, or its bf16 copy; no autograd in
    the block. Afterwards the generator is in the mode it was in."""
    was_training = generator.training
    generator.to(settings.device).eval()
    try:
        with torch.inference_mode():
            yield _bf16_copy(generator) if settings.cast else generator
    finally:
        generator.train(was_training)


# -- the whole image ------------------------------------------------------------------------------

def whole_forward(generator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The authors' forward: (N, 3, H, W) in [-1, 1] through ``generator``, the output cropped
    to its top-left H x W. Runs in the caller's autocast context."""
    height, width = x.shape[-2:]
    return generator(x)[..., :height, :width]


def generate(generator: nn.Module, x: torch.Tensor, settings: Settings,
             progress: ProgressCallback | None = None) -> torch.Tensor:
    """(N, 3, H, W) float RGB in [-1, 1] -> the generator's output, same shape, float32 in
    [-1, 1], on the CPU: whole when H x W is at most a tile's area, else in exact tiles
    (:func:`cglib.tiling.tiled_forward`), one image at a time. An out-of-memory error halves
    the tile and tries again (one line says so). The generator must already be set up by
    :func:`evaluating`."""
    height, width = x.shape[-2:]
    tile = settings.tile
    while True:
        try:
            if height * width > tile * tile:
                return torch.cat([tiled_forward(generator, image[None], tile, settings.autocast,
                                                progress) for image in x])
            x_device = x.to(settings.device, next(generator.parameters()).dtype)
            with settings.autocast():
                y = whole_forward(generator, x_device).float().cpu()
            if progress is not None:
                progress(float(x.shape[0] * height * width))
            return y
        except _OUT_OF_MEMORY as error:
            tile = _smaller_tile(tile, min(tile, max(height, width)), settings.device, error)


_OUT_OF_MEMORY = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


def _smaller_tile(tile: int, side: int, device: torch.device, error: Exception) -> int:
    """Half of the tile that ran out of memory (of ``side`` when the whole image did), after
    freeing what the failed attempt held; an error when it would fall under MIN_TILE."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    smaller = max(4, side // 2 // 4 * 4)
    if smaller < MIN_TILE:
        raise RuntimeError(f"out of memory on {device} even with tiles of {side} pixels; free "
                           f"memory on the device or use --device cpu ({error})") from error
    print(f"out of memory on {device} with tiles of {side} pixels; trying again with {smaller}")
    return smaller


# -- uint8 images in and out ----------------------------------------------------------------------

class TooSmallError(images.ImageError):
    """An image with a side under :data:`MIN_SIDE` pixels (an ImageError, so a ValueError):
    ``path`` names it (``image 0`` for an array), ``reason`` is ``"too small: 5x7 pixels,
    cartoonize needs at least 8x8"``, for a job's report."""

    def __init__(self, name: str, width: int, height: int) -> None:
        super().__init__(name, f"too small: {width}x{height} pixels, cartoonize needs at least "
                               f"{MIN_SIDE}x{MIN_SIDE}")
        self.width, self.height = width, height

    def __str__(self) -> str:
        return (f"{self.path} is {self.width}x{self.height} pixels; cartoonize needs at least "
                f"{MIN_SIDE}x{MIN_SIDE}")


def check_image(image: object, index: int = 0) -> np.ndarray:
    """``image`` if it is an H x W x 3 uint8 RGB array with both sides at least
    :data:`MIN_SIDE`; else ValueError naming image ``index`` and what is wrong
    (:class:`TooSmallError` for the size)."""
    images.check_rgb(image, f"image {index}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise TooSmallError(f"image {index}", width, height)
    return image


def shrunk_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) of a ``width`` x ``height`` image after :func:`shrink`."""
    if max_side is None:
        return width, height
    if max_side < MIN_SIDE:
        raise ValueError(f"max_side={max_side}: give at least {MIN_SIDE} pixels, or None")
    scale = max_side / max(height, width)
    if scale >= 1:
        return width, height
    return max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))


def shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` downsized (area interpolation) so that its longer side is at most
    ``max_side``; as it is when it is smaller or ``max_side`` is None."""
    height, width = image.shape[:2]
    size = shrunk_size(width, height, max_side)
    if size == (width, height):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def adjust_colors(photo: np.ndarray, cartoon: np.ndarray, keep_colors: bool = False,
                  strength: float = 1.0) -> np.ndarray:
    """Colour control of a cartoon of ``photo`` (both H x W x 3 uint8 RGB).

    ``keep_colors``: the cartoon's luma (its drawing: lines, flat shading) with the photo's
    chroma (its colours), in YCrCb. ``strength`` in [0, 1]: the result blended with the photo,
    0 = the photo, 1 = the (recoloured) cartoon.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength={strength}: give a number from 0 (the photo) to 1 (the "
                         "cartoon)")
    if keep_colors:
        luma = cv2.cvtColor(cartoon, cv2.COLOR_RGB2YCrCb)[..., :1]
        chroma = cv2.cvtColor(photo, cv2.COLOR_RGB2YCrCb)[..., 1:]
        cartoon = cv2.cvtColor(np.concatenate([luma, chroma], axis=2), cv2.COLOR_YCrCb2RGB)
    if strength == 1.0:
        return cartoon
    blended = strength * cartoon.astype(np.float32) + (1 - strength) * photo.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def cartoonize(generator: nn.Module, image: np.ndarray | Sequence[np.ndarray], *,
               tile: int | str = "auto", device: str | torch.device | None = None,
               precision: str = "auto", max_side: int | None = None, keep_colors: bool = False,
               strength: float = 1.0, batch_size: int = 4,
               progress: ProgressCallback | None = None
               ) -> np.ndarray | list[np.ndarray]:
    """Cartoonize an H x W x 3 uint8 RGB image (or a list of them) with ``generator``: the
    authors' network output on the unpadded image, cropped to H x W, as uint8 RGB.

    Any size with both sides at least :data:`MIN_SIDE`. ``max_side``: downsize first (area
    interpolation) so the longer side is at most that; the result has the downsized size.
    ``tile``: images of more than ``tile`` x ``tile`` pixels run in exact tiles of about that
    area (:func:`cglib.tiling.tiled_forward`: the same result, bounded memory); ``"auto"``: see
    :func:`default_tile`. ``device``: where to run (the generator is moved there); None keeps
    the generator's. ``precision``: ``"auto"`` (bf16 on CPUs with native bf16, else fp32),
    ``"fp32"``, ``"bf16"`` or ``"fp16"``. ``keep_colors``, ``strength``: see
    :func:`adjust_colors`. Images of one size that run whole go through the generator
    ``batch_size`` at a time. ``progress(pixels)`` is called as input pixels are done. The
    generator runs in eval mode and is left in the mode it was in.
    """
    single = isinstance(image, np.ndarray)
    photos = [shrink(check_image(picture, index), max_side)
              for index, picture in enumerate([image] if single else image)]
    settings = Settings.resolve(generator, device, precision, tile)
    cartoons: list[np.ndarray | None] = [None] * len(photos)
    with evaluating(generator, settings) as model:
        for indices in _batches(photos, settings.tile, batch_size):
            batch = images.to_tensor([photos[index] for index in indices])
            outputs = images.to_images(generate(model, batch, settings, progress))
            for index, cartoon in zip(indices, outputs, strict=True):
                cartoons[index] = adjust_colors(photos[index], cartoon, keep_colors, strength)
    return cartoons[0] if single else cartoons


def _batches(pictures: list[np.ndarray], tile: int, batch_size: int) -> list[list[int]]:
    """Indices of ``pictures`` in groups that run together: same size, at most ``batch_size``,
    never more pixels than one tile; larger images alone."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, picture in enumerate(pictures):
        groups.setdefault(picture.shape, []).append(index)
    batches = []
    for shape, indices in groups.items():
        per_batch = max(1, min(batch_size, tile * tile // (shape[0] * shape[1])))
        batches += [indices[i:i + per_batch] for i in range(0, len(indices), per_batch)]
    return batches
