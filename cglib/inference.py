"""Cartoonizing photos of any size: exactly the authors' network, whole or in tiles, in bounded
memory, fast on a CPU.

The authors' test code runs the generator on the whole photo, unpadded: their network takes any
size, and where a side is not a multiple of 4 its output is up to 3 pixels larger, the picture
in its top-left corner (:meth:`cglib.models.Generator.forward`). :func:`cartoonize` does exactly
that, and crops.

A large photo does not fit in memory at once, and cutting it into tiles that each run through
the generator would change the answer: every instance normalization would use the statistics
of its tile instead of the photo's (visible tone shifts from tile to tile). Here tiles never
change the answer. :func:`tiled_forward` walks the generator's layers in passes over the whole
image: a pass computes one stage (the convolutions up to the next instance normalization) tile
by tile, each tile read with the halo its convolutions need, and sums the normalization's
per-channel statistics over all tiles (float64) before anything is normalized. Feature maps
between stages stay in host memory, except those at the photo's full resolution (64 channels:
the largest), which are recomputed from the stage before when needed (about 8% more
arithmetic). Accelerator memory is bounded by one tile, and the result equals the whole-image
forward up to float rounding.

Images are H x W x 3 uint8 RGB arrays at this module's boundary; :func:`generate` is the same
at the tensor level, (N, 3, H, W) float in [-1, 1].
"""

from __future__ import annotations

import contextlib
import copy
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cglib import env, images, models

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

ProgressCallback = Callable[[float], None]
"""Called with a number of input pixels (fractional) as the work on them finishes."""


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
    instance normalization accumulating in fp32): 8 to 15% faster than autocast there, which
    casts every weight on every call. Elsewhere mixed precision is autocast. Channels-last
    memory is not used: on the CPU measured (AVX512-BF16) bf16 ran 5 to 6% slower with it.
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
        if self.cast:
            return contextlib.nullcontext()
        return env.autocast(self.device, self.precision)


#: bf16 copies of generators, kept while the generator lives and its weights do not change.
_CASTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _bf16_copy(generator: nn.Module) -> nn.Module:
    """A bf16 copy of ``generator`` in eval mode, made once per state of its weights (every
    in-place change of a parameter bumps its version)."""
    version = tuple((p.data_ptr(), p._version) for p in generator.parameters())
    kept = _CASTS.get(generator)
    if kept is None or kept[0] != version:
        kept = (version, copy.deepcopy(generator).to(torch.bfloat16).eval())
        _CASTS[generator] = kept
    return kept[1]


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
    (:func:`tiled_forward`), one image at a time. An out-of-memory error halves the tile and
    tries again (one line says so). The generator must already be set up by
    :func:`evaluating`."""
    height, width = x.shape[-2:]
    tile = settings.tile
    while True:
        try:
            if height * width > tile * tile:
                return torch.cat([tiled_forward(generator, image[None], tile, settings, progress)
                                  for image in x])
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


# -- the generator as a list of operations --------------------------------------------------------

@dataclass(frozen=True)
class Convolution:
    """One convolution of the generator with the padding it applies at the image border
    (``reflect`` or zeros), or the transposed up-convolution (which pads nothing)."""

    layer: nn.Conv2d | nn.ConvTranspose2d
    padding: int
    reflect: bool

    @property
    def transposed(self) -> bool:
        return isinstance(self.layer, nn.ConvTranspose2d)

    def output_length(self, length: int) -> int:
        """Output length along one axis for an input of ``length``."""
        (kernel, stride, padding) = self.layer.kernel_size[0], self.layer.stride[0], self.padding
        if self.transposed:
            return (length - 1) * stride - 2 * padding + kernel + self.layer.output_padding[0]
        return (length + 2 * padding - kernel) // stride + 1

    def input_range(self, start: int, stop: int) -> tuple[int, int]:
        """The input positions [lo, hi) that outputs [start, stop) read along one axis, before
        clipping to the image (positions outside it are padding, or nothing when transposed)."""
        kernel, stride, padding = self.layer.kernel_size[0], self.layer.stride[0], self.padding
        if self.transposed:  # output j gathers inputs i with j = stride * i - padding + t
            return -((kernel - 1 - start - padding) // stride), (stop - 1 + padding) // stride + 1
        return stride * start - padding, stride * (stop - 1) - padding + kernel

    def apply(self, x: torch.Tensor, wanted: tuple[Span, Span]) -> torch.Tensor:
        """The outputs ``wanted`` (rows, columns) from ``x``, which holds exactly the clipped
        input ranges of ``wanted``. A convolution: border padding first, then the convolution
        without any. The transposed one runs with the layer's own padding (on a CPU several
        times faster than without), its output index q then being the position
        stride x (first input) + q."""
        layer, (rows, columns) = self.layer, wanted
        if self.transposed:
            y = F.conv_transpose2d(x, layer.weight, layer.bias, layer.stride, layer.padding,
                                   layer.output_padding)
            top = rows.start - layer.stride[0] * rows.input_clipped[0]
            left = columns.start - layer.stride[1] * columns.input_clipped[0]
            return y[..., top:top + len(rows), left:left + len(columns)]
        pads = [*columns.border_padding(), *rows.border_padding()]
        if any(pads):
            x = F.pad(x, pads, mode="reflect" if self.reflect else "constant")
        return F.conv2d(x, layer.weight, layer.bias, layer.stride)


@dataclass(frozen=True)
class Residual:
    """A residual block: its body's operations, whose result is added to the block's input."""

    operations: tuple


def operations(module: nn.Module) -> list:
    """The layers of ``module`` in forward order, as the tiled executor runs them:
    :class:`Convolution` (with the reflection padding in front of it folded in),
    ``nn.InstanceNorm2d`` (normalized with whole-image statistics), ``nn.BatchNorm2d`` in eval
    mode, ``nn.ReLU``, ``nn.LeakyReLU``, ``nn.Tanh``, and :class:`Residual` blocks. Raises
    ValueError for a layer it cannot tile."""
    found: list = []
    reflection = 0
    for layer in module.children():
        if isinstance(layer, models.ResidualBlock):
            found.append(Residual(tuple(operations(layer.body))))
        elif isinstance(layer, nn.Sequential):
            found += operations(layer)
        elif isinstance(layer, nn.ReflectionPad2d):
            reflection = layer.padding[0]
        elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            padding = reflection or layer.padding[0]
            found.append(Convolution(layer, padding, reflect=bool(reflection)))
            reflection = 0
        elif isinstance(layer, (nn.InstanceNorm2d, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU,
                                nn.Tanh)):
            found.append(layer)
        else:
            raise ValueError(f"tiled_forward cannot run a {type(layer).__name__} layer; it "
                             "knows the layers of cglib.models.Generator")
    return found


# -- tiles ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """A range [start, stop) of positions along one axis, with the input range a convolution
    reads for it: ``input_wanted`` (may reach past the border) and ``input_clipped``."""

    start: int
    stop: int
    input_wanted: tuple[int, int] = (0, 0)
    input_clipped: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return self.stop - self.start

    def border_padding(self) -> tuple[int, int]:
        """Pixels of padding before and after: how far the wanted input passes the border."""
        return (self.input_clipped[0] - self.input_wanted[0],
                self.input_wanted[1] - self.input_clipped[1])


def _spans(length: int, count: int) -> list[tuple[int, int]]:
    """``count`` ranges of nearly equal size covering [0, length)."""
    bounds = [round(index * length / count) for index in range(count + 1)]
    return list(zip(bounds, bounds[1:], strict=False))


class _Moments:
    """Per-channel count, mean and sum of squared deviations, combined over tiles in float64
    (Chan's parallel formula), for an instance normalization over the whole image."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None

    def add(self, y: torch.Tensor) -> None:
        """Take in a tile y (1, C, h, w)."""
        channels = y.shape[1]
        variance, mean = torch.var_mean(y.reshape(channels, -1).float(), dim=1, correction=0)
        count = y.shape[2] * y.shape[3]
        mean, squares = mean.double().cpu(), variance.double().cpu() * count
        if self.mean is None:
            self.count, self.mean, self.squares = count, mean, squares
            return
        total = self.count + count
        delta = mean - self.mean
        self.squares = self.squares + squares + delta**2 * self.count * count / total
        self.mean = self.mean + delta * count / total
        self.count = total

    def affine(self, norm: nn.InstanceNorm2d) -> _Affine:
        """``norm`` with these statistics, as a per-channel scale and shift; a normalization
        that carries its statistics over a video's frames (:class:`cglib.temporal.CarriedNorm`)
        takes them in first."""
        mean, variance = self.mean, self.squares / self.count
        if hasattr(norm, "carry_whole"):
            mean, variance = norm.carry_whole(mean, variance)
        inverse = 1 / torch.sqrt(variance + norm.eps)
        scale = inverse if norm.weight is None else norm.weight.double().cpu() * inverse
        shift = -mean * scale
        if norm.bias is not None:
            shift = shift + norm.bias.double().cpu()
        return _Affine(scale.float(), shift.float())


@dataclass(frozen=True)
class _Affine:
    """y = scale * x + shift per channel: a normalization whose statistics are known."""

    scale: torch.Tensor
    shift: torch.Tensor

    @classmethod
    def from_batch_norm(cls, norm: nn.BatchNorm2d) -> _Affine:
        inverse = 1 / torch.sqrt(norm.running_var.double() + norm.eps)
        scale = norm.weight.double() * inverse if norm.affine else inverse
        shift = -norm.running_mean.double() * scale
        if norm.affine:
            shift = shift + norm.bias.double()
        return cls(scale.float().cpu(), shift.float().cpu())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """scale * x + shift per channel, computed in float32 (one pass)."""
        shift = self.shift.to(x.device).view(1, -1, 1, 1)
        return torch.addcmul(shift, x.float(), self.scale.to(x.device).view(1, -1, 1, 1))


class _Executor:
    """Runs a list of :func:`operations` over one image held in host memory, in passes of
    tiles; see the module docstring."""

    def __init__(self, tile: int, settings: Settings, full_size: tuple[int, int],
                 progress: ProgressCallback | None, passes: int) -> None:
        self.tile, self.settings, self.full_size = tile, settings, full_size
        self.progress, self.share = progress, full_size[0] * full_size[1] / passes
        self.reported = 0.0

    def report(self, pixels: float) -> None:
        """Pass ``pixels`` of progress on, never more than the image has in all."""
        if self.progress is not None:
            pixels = min(pixels, self.full_size[0] * self.full_size[1] - self.reported)
            self.reported += pixels
            self.progress(pixels)

    def run(self, ops: Sequence, source: torch.Tensor, pending: list) -> tuple[torch.Tensor, list]:
        """Run ``ops`` on ``source`` (host memory, to be read through the ``pending``
        operations); returns the new source and what is still pending on it."""
        for op in ops:
            if isinstance(op, nn.InstanceNorm2d):
                source, pending = self._normalize(op, source, pending)
            elif isinstance(op, Residual):
                skip = self.materialize(source, pending)
                inner, inner_pending = self.run(op.operations, skip, [])
                source, pending = self._pass(inner, inner_pending, add_to=skip), []
            elif isinstance(op, nn.BatchNorm2d):
                pending = [*pending, _Affine.from_batch_norm(op)]
            else:
                pending = [*pending, op]
        return source, pending

    def materialize(self, source: torch.Tensor, pending: list) -> torch.Tensor:
        """``source`` read through ``pending``, computed and stored in host memory."""
        if not pending:
            return source
        return self._pass(source, pending, store=True)

    def _normalize(self, norm: nn.InstanceNorm2d, source: torch.Tensor, pending: list
                   ) -> tuple[torch.Tensor, list]:
        """A pass for the statistics of ``norm``'s input over the whole image. The input is
        stored unless it has the photo's full resolution (recomputed later instead)."""
        moments = _Moments()
        full_resolution = self._output_size(source, pending) == self.full_size
        stored = self._pass(source, pending, moments=moments, store=not full_resolution)
        affine = moments.affine(norm)
        if full_resolution:
            return source, [*pending, affine]
        return stored, [affine]

    def _output_size(self, source: torch.Tensor, pending: list) -> tuple[int, int]:
        height, width = source.shape[-2:]
        for op in pending:
            if isinstance(op, Convolution):
                height, width = op.output_length(height), op.output_length(width)
        return height, width

    def _pass(self, source: torch.Tensor, pending: list, moments: _Moments | None = None,
              store: bool = False, add_to: torch.Tensor | None = None) -> torch.Tensor | None:
        """Compute ``source`` read through ``pending`` tile by tile: into a new host tensor
        (``store``), added into ``add_to`` (in place), and/or into ``moments``."""
        height, width = self._output_size(source, pending)
        side = self._tile_side(source, pending)
        rows, columns = _spans(height, math.ceil(height / side)), _spans(width,
                                                                          math.ceil(width / side))
        out = add_to
        for top, bottom in rows:
            for left, right in columns:
                y = self._tile(source, pending, Span(top, bottom), Span(left, right))
                if moments is not None:
                    moments.add(y)
                if out is None and (store or add_to is not None):
                    out = torch.empty((1, y.shape[1], height, width), dtype=y.dtype)
                if add_to is not None:
                    out[..., top:bottom, left:right] += y.to(out.dtype).cpu()
                elif store:
                    out[..., top:bottom, left:right] = y.cpu()
                self.report(self.share * (bottom - top) * (right - left) / (height * width))
        return out

    def _tile_side(self, source: torch.Tensor, pending: list) -> int:
        """The side of this pass's output tiles that keeps its largest intermediate map within
        the memory of a full-resolution 64-channel tile of ``tile`` x ``tile`` pixels."""
        height = self._output_size(source, pending)[0]
        channels, resolution, most = source.shape[1], source.shape[-2], 0
        for op in pending:
            if isinstance(op, Convolution):
                new_resolution = op.output_length(resolution)
                most = max(most, channels * (resolution / height) ** 2
                           + op.layer.out_channels * (new_resolution / height) ** 2)
                channels, resolution = op.layer.out_channels, new_resolution
        most = max(most, 2 * channels)
        return max(4, int(self.tile * math.sqrt(64 / most)))

    def _tile(self, source: torch.Tensor, pending: list, rows: Span, columns: Span
              ) -> torch.Tensor:
        """Outputs ``rows`` x ``columns`` of ``source`` read through ``pending``, on the
        device: the input ranges are found from the last convolution back to the source, then
        the operations run forward on the crop."""
        lengths = [source.shape[-2:]]
        for op in pending:
            if isinstance(op, Convolution):
                lengths.append(tuple(op.output_length(n) for n in lengths[-1]))
        wanted: list[tuple[Span, Span]] = []
        convolutions = [op for op in pending if isinstance(op, Convolution)]
        for op, (height, width) in zip(reversed(convolutions), reversed(lengths[:-1]),
                                       strict=True):
            rows, columns = (_with_input(op, span, length)
                             for span, length in ((rows, height), (columns, width)))
            wanted.append((rows, columns))
            rows, columns = (Span(*span.input_clipped) for span in (rows, columns))
        wanted.reverse()
        settings = self.settings
        x = source[..., rows.start:rows.stop, columns.start:columns.stop].to(settings.device)
        with settings.autocast():
            for op in pending:
                if isinstance(op, Convolution):
                    x = op.apply(x.to(op.layer.weight.dtype), wanted.pop(0))
                else:
                    x = op(x)
        return x


def _with_input(op: Convolution, span: Span, length: int) -> Span:
    """``span`` of ``op``'s output with the input range it reads, wanted and clipped to
    [0, ``length``)."""
    low, high = op.input_range(span.start, span.stop)
    return Span(span.start, span.stop, (low, high), (max(low, 0), min(high, length)))


def tiled_forward(generator: nn.Module, x: torch.Tensor, tile: int, settings: Settings,
                  progress: ProgressCallback | None = None) -> torch.Tensor:
    """The whole-image forward of ``generator`` on one image x (1, 3, H, W) in [-1, 1],
    computed in tiles of about ``tile`` x ``tile`` input pixels: (1, 3, H, W) float32 on the
    CPU, equal to :func:`whole_forward` up to float rounding (see the module docstring).
    Runs in ``settings``' precision; the generator must be in eval mode."""
    ops = operations(generator)
    residuals = [op for op in ops if isinstance(op, Residual)]
    norms = [op for op in [*ops, *(o for r in residuals for o in r.operations)]
             if isinstance(op, nn.InstanceNorm2d)]
    # one pass per normalization and per residual sum, the block input and the output
    executor = _Executor(tile, settings, tuple(x.shape[-2:]), progress,
                         passes=len(norms) + len(residuals) + 2)
    with torch.inference_mode():
        source, pending = executor.run(ops, x.float().cpu(), [])
        y = executor.materialize(source, pending)
    height, width = x.shape[-2:]
    executor.report(height * width)  # whatever the estimate of the passes left over
    return y[..., :height, :width].float()


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
    area (:func:`tiled_forward`: the same result, bounded memory); ``"auto"``: see
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
