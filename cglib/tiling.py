"""Exact tiles: the generator run over an image of any size in bounded memory, with the same
result as the whole-image forward.

What the authors' network needs. CartoonGAN's generator (:mod:`cglib.models`) is a chain of
convolutions (the 7x7 flat and output convolutions behind reflection padding, the stride-2
down-convolutions and 3x3 convolutions behind zero padding, the transposed up-convolutions),
ReLUs, a tanh, eight residual sums and an instance normalization closing each block (the flat
convolution, each down- and up-convolution, each half of a residual block; not the output
convolution). Everything but the normalization is local: an output pixel reads a small
window of the layer's input (the receptive field), and the border padding depends only on
where the image's edge is. Instance normalization is not local: each channel c is normalized
by the mean and (biased) variance of that channel over the *whole* H x W image::

    y_chw = gamma_c * (x_chw - mu_c) / sqrt(sigma_c^2 + eps) + beta_c,
    mu_c = mean over h, w of x_chw,   sigma_c^2 = mean over h, w of (x_chw - mu_c)^2.

Cutting a photo into tiles and running each through the generator alone therefore changes
the answer: every tile is normalized with its own statistics (tone and contrast shift from
tile to tile, seams show).

Why these tiles are exact. The generator becomes a list of :func:`operations`. They run in
*passes* over the image; a pass computes one stage, the local operations up to the next
instance normalization, tile by tile:

- each output tile is computed from a crop of the stage's input: its input ranges are found
  from the last convolution back to the first (:meth:`Convolution.input_range`, the halo),
  and the border padding is applied only where a crop touches the image's edge
  (:meth:`Span.border_padding`), so each convolution gives exactly the values the whole image
  gives there;
- the normalization's per-channel statistics are combined over the tiles in float64
  (:class:`_Moments`, Chan's parallel formula for count, mean and squared deviations), so
  mu_c and sigma_c^2 are the whole image's;
- with the statistics known, the normalization is a per-channel scale and shift
  (:class:`_Affine`), a local operation that the next pass applies on the fly; a residual
  block's sum is one more pass that adds its body's output into the block's input.

Feature maps between stages stay in host memory, except those at the photo's full resolution
(64 channels: the largest), which are recomputed from the stage before when needed (about 8%
more arithmetic). Accelerator memory is bounded by one tile, whatever the photo's size, and
the result equals the whole-image forward up to float rounding. Batch normalization in eval
mode (the paper text's normalization) is a per-channel affine from the start and needs no pass.

Images here are tensors: (1, 3, H, W) float RGB in [-1, 1], as :mod:`cglib.inference` passes
them; :func:`cglib.inference.cartoonize` is the way in for uint8 photos.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cglib import models

ProgressCallback = Callable[[float], None]
"""Called with a number of input pixels (fractional) as the work on them finishes."""


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


# -- instance normalization with the whole image's statistics -------------------------------------

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


# -- the passes -----------------------------------------------------------------------------------

class _Executor:
    """Runs a list of :func:`operations` over one image held in host memory, in passes of
    tiles on ``device``, each tile's arithmetic inside ``autocast()``; see the module
    docstring."""

    def __init__(self, tile: int, device: torch.device,
                 autocast: Callable[[], AbstractContextManager],
                 full_size: tuple[int, int], progress: ProgressCallback | None,
                 passes: int) -> None:
        self.tile, self.device, self.autocast, self.full_size = tile, device, autocast, full_size
        self.progress, self.share = progress, full_size[0] * full_size[1] / passes
        self.reported = 0.0

    def report(self, pixels: float) -> None:
        """Pass ``pixels`` of progress on, never more than the image has in all."""
        if self.progress is not None:
            pixels = min(pixels, self.full_size[0] * self.full_size[1] - self.reported)
            self.reported += pixels
            self.progress(pixels)

    def execute(self, ops: Sequence, source: torch.Tensor, pending: list
                ) -> tuple[torch.Tensor, list]:
        """Run ``ops`` on ``source`` (host memory, to be read through the ``pending``
        operations); returns the new source and what is still pending on it."""
        for op in ops:
            if isinstance(op, nn.InstanceNorm2d):
                source, pending = self._normalize(op, source, pending)
            elif isinstance(op, Residual):
                skip = self.materialize(source, pending)
                inner, inner_pending = self.execute(op.operations, skip, [])
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
        x = source[..., rows.start:rows.stop, columns.start:columns.stop].to(self.device)
        with self.autocast():
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


def tiled_forward(generator: nn.Module, x: torch.Tensor, tile: int,
                  autocast: Callable[[], AbstractContextManager] = nullcontext,
                  progress: ProgressCallback | None = None) -> torch.Tensor:
    """The whole-image forward of ``generator`` on one image x (1, 3, H, W) float RGB in
    [-1, 1], computed in tiles of about ``tile`` x ``tile`` input pixels: (1, 3, H, W) float32
    in [-1, 1] on the CPU, equal to :func:`cglib.inference.whole_forward` (the output cropped
    to H x W) up to float rounding; see the module docstring.

    Tiles run where the generator's weights are, in their dtype, each inside ``autocast()``
    (mixed precision; :meth:`cglib.inference.Settings.autocast`). The generator must be in
    eval mode. ``progress(pixels)`` is called as input pixels are done, H x W in all."""
    ops = operations(generator)
    residuals = [op for op in ops if isinstance(op, Residual)]
    norms = [op for op in [*ops, *(o for r in residuals for o in r.operations)]
             if isinstance(op, nn.InstanceNorm2d)]
    # one pass per normalization and per residual sum, the block input and the output
    device = next(generator.parameters()).device
    executor = _Executor(tile, device, autocast, tuple(x.shape[-2:]), progress,
                         passes=len(norms) + len(residuals) + 2)
    with torch.inference_mode():
        source, pending = executor.execute(ops, x.float().cpu(), [])
        y = executor.materialize(source, pending)
    height, width = x.shape[-2:]
    executor.report(height * width)  # whatever the estimate of the passes left over
    return y[..., :height, :width].float()
