"""Video without flicker: a cartoon that stays put where the scene does.

Cartoonized frame by frame, a video shimmers: every instance normalization takes the
statistics of its own frame, and the network's strided convolutions draw the same object a
little differently at every sub-pixel position. Measured with the warping error
(:mod:`cglib.flow`), the frame-by-frame cartoon of a slow pan changes tens of times more from
frame to frame than its input does. Two things carried from frame to frame cut that:

1. **Statistics.** Each instance normalization normalizes with an exponential moving average
   of its per-channel mean and variance over the frames (:class:`CarriedNorm`),
   $\\hat\\mu_t = m\\,\\hat\\mu_{t-1} + (1 - m)\\,\\mu_t$ and the same for $\\sigma^2$, with
   ``momentum`` m: tones do not pump when an object crosses the frame.
2. **The previous cartoon, along the flow.** Where the optical flow between the input frames
   says a pixel was visible in the previous frame (:func:`cglib.flow.visible`), the cartoon
   moves toward the previous output warped onto it: $O_t = C_t + \\mathrm{clip}(b\\,
   (W(O_{t-1}) - C_t), -d, d)$ with ``blend`` b, never more than ``max_change`` d levels from
   the frame's own cartoon $C_t$. The clip keeps the style: every pixel stays within d levels
   of its cartoon, and the flow's mistakes cannot smear.

A scene cut (:func:`is_cut`: the frames differ on average by more than :data:`CUT` levels)
starts both afresh at that very frame: its cartoon is the frame-by-frame one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from cglib import flow, images, inference

#: Mean absolute difference (levels of 255) between two consecutive frames, gray at 1/8 of
#: their size, above which the second starts a new scene. Consecutive frames of a pan or a
#: zoom differ by a few levels at that size, two unrelated photos by 40 and more.
CUT = 25


def is_cut(previous: np.ndarray, current: np.ndarray) -> bool:
    """True when ``current`` starts a new scene after ``previous`` (both H x W x 3 uint8
    RGB, one size): see :data:`CUT`."""
    height, width = current.shape[:2]
    size = (max(1, width // 8), max(1, height // 8))
    small = [cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), size,
                        interpolation=cv2.INTER_AREA).astype(np.float32)
             for frame in (previous, current)]
    return float(np.abs(small[1] - small[0]).mean()) > CUT


@dataclass
class TemporalSettings:
    """How much is carried: ``momentum`` of the statistics (0: each frame its own, the
    frame-by-frame normalization), ``blend`` of the previous output (0: none) and
    ``max_change`` in levels; see the module docstring. Measured on the benchmark clips
    (``python -m cglib bench video``), the blend along the flow does most of the cut in
    flicker; the statistics' average steadies the tones when an object crosses the frame but
    moves every pixel, a momentum of 0.2 already costing 2 to 3 dB PSNR to the frame-by-frame
    cartoon on the moving square, hence the small default."""

    momentum: float = 0.1
    blend: float = 0.8
    max_change: float = 6.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum={self.momentum}: give a number from 0 (each frame its "
                             "own statistics) to under 1")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"blend={self.blend}: give a number from 0 (no blending) to 1")
        if self.max_change < 0:
            raise ValueError(f"max_change={self.max_change}: give levels from 0 up")


class CarriedNorm(nn.InstanceNorm2d):
    """``norm`` (an affine instance normalization) with its statistics carried over the
    frames of a video: the frames of a batch are taken in order, each normalized with the
    moving average of the per-channel mean and variance up to it (float64), which starts
    afresh at the frames that ``video`` (a :class:`TemporalState`) marks as starts. Shares
    ``norm``'s weights. Frames run in exact tiles (:func:`cglib.tiling.tiled_forward`, one
    at a time) are carried through :meth:`carry_whole`."""

    def __init__(self, norm: nn.InstanceNorm2d, video: TemporalState) -> None:
        super().__init__(norm.num_features, norm.eps, affine=norm.affine)
        self.weight, self.bias = norm.weight, norm.bias
        self.video = video
        self.mean: torch.Tensor | None = None
        self.variance: torch.Tensor | None = None

    def carry(self, mean: torch.Tensor, variance: torch.Tensor, start: bool
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The statistics to normalize one frame with, from its own per-channel ``mean`` and
        ``variance`` (C,) float64; ``start``: the frame starts a scene."""
        momentum = self.video.settings.momentum
        if start or self.mean is None:
            self.mean, self.variance = mean, variance
        else:
            self.mean = momentum * self.mean + (1 - momentum) * mean
            self.variance = momentum * self.variance + (1 - momentum) * variance
        return self.mean, self.variance

    def carry_whole(self, mean: torch.Tensor, variance: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`carry` for the one frame of a batch run in tiles, from its statistics over
        all tiles."""
        (start,) = self.video.starts
        return self.carry(mean, variance, start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W), the N frames in order -> the same, normalized, frame by frame.

        Per frame, one pass for the statistics and one to normalize, both in float32
        arithmetic and neither copying the map to float32 (which, in bf16 on a CPU, costs ten
        times as much): a batch normalization's statistics of the frame's channels (the mean
        and the biased variance), then a batch normalization in inference mode with the
        carried ones. A frame keeps its memory layout (channels-last stays channels-last)."""
        if len(x) > 1:
            return torch.cat([self._frame(frame[None], start)
                              for frame, start in zip(x, self.video.starts, strict=True)])
        (start,) = self.video.starts
        return self._frame(x, start)

    def _frame(self, x: torch.Tensor, start: bool) -> torch.Tensor:
        """One frame x (1, C, H, W) normalized; ``start``: it starts a scene."""
        mean, variance = self.carry(*(s.double() for s in _moments(x)), start)
        weight, bias = ((p.float() if self.affine else None) for p in (self.weight, self.bias))
        return nn.functional.batch_norm(x, mean.float(), variance.float(), weight, bias, False,
                                        0.0, self.eps)


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of x (1, C, H, W), float32, (C,) each: a batch
    normalization's statistics, in one pass without a float32 copy of x where the device has
    that kernel (CPU, CUDA), else from a float32 copy (MPS, for one). The float32 buffers
    given (left as they are: momentum 0) make the kernel return float32 statistics for a
    bf16 or fp16 map; without them it rounds them to the map's dtype."""
    channels = x.shape[1]
    try:
        return torch.batch_norm_update_stats(
            x, torch.zeros(channels, device=x.device), torch.ones(channels, device=x.device),
            0.0)
    except NotImplementedError:
        variance, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0)
        return mean, variance


class TemporalState:
    """What one video carries from frame to frame: the previous input and output frames,
    and the statistics of the generator's normalizations (:meth:`carrying`)."""

    def __init__(self, settings: TemporalSettings | None = None) -> None:
        self.settings = settings or TemporalSettings()
        self.starts: list[bool] = []
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # input, output

    @contextlib.contextmanager
    def carrying(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` with each instance normalization replaced by a :class:`CarriedNorm`
        in the block (put back afterwards)."""
        replaced = [(parent, name, child) for parent in model.modules()
                    for name, child in parent.named_children()
                    if type(child) in (nn.InstanceNorm2d, inference.ChannelsLastNorm)]
        for parent, name, norm in replaced:
            setattr(parent, name, CarriedNorm(norm, self))
        try:
            yield model
        finally:
            for parent, name, norm in replaced:
                setattr(parent, name, norm)

    def mark_starts(self, frames: Sequence[np.ndarray]) -> list[bool]:
        """Which of ``frames`` (the next ones of the video, H x W x 3 uint8 RGB) start a
        scene: the video's first frame and every cut (:func:`is_cut`). Call before the
        frames go through the generator."""
        previous = self.previous[0] if self.previous is not None else None
        self.starts = []
        for frame in frames:
            self.starts.append(previous is None or is_cut(previous, frame))
            previous = frame
        return self.starts

    def blend(self, frames: Sequence[np.ndarray], cartoons: Sequence[np.ndarray]
              ) -> list[np.ndarray]:
        """The outputs of ``frames`` from their ``cartoons`` (H x W x 3 uint8 RGB, as
        :meth:`mark_starts` saw them): each moved toward the previous output along the flow
        (see the module docstring), except at a scene's start."""
        outputs = []
        for frame, cartoon, start in zip(frames, cartoons, self.starts, strict=True):
            output = cartoon
            if not start and self.settings.blend > 0 and self.previous is not None:
                output = self._toward_previous(frame, cartoon)
            self.previous = frame, output
            outputs.append(output)
        return outputs

    def _toward_previous(self, frame: np.ndarray, cartoon: np.ndarray) -> np.ndarray:
        previous_frame, previous_output = self.previous
        backward = flow.optical_flow(frame, previous_frame, fast=True)
        forward = flow.optical_flow(previous_frame, frame, fast=True)
        seen = flow.visible(backward, forward)[..., None]
        here = cartoon.astype(np.float32)
        change = self.settings.blend * (flow.warp(previous_output, backward) - here)
        limit = self.settings.max_change
        moved = here + seen * np.clip(change, -limit, limit)
        return np.clip(np.rint(moved), 0, 255).astype(np.uint8)


def next_cartoons(model: nn.Module, photos: Sequence[np.ndarray], settings: inference.Settings,
                  carried: TemporalState | None, keep_colors: bool = False,
                  strength: float = 1.0) -> list[np.ndarray]:
    """The cartoons of the next ``photos`` of a video (H x W x 3 uint8 RGB, one size), H x W x
    3 uint8 RGB: through ``model`` (set up by :func:`cglib.inference.evaluating`; with
    ``carried``, inside its :meth:`~TemporalState.carrying`) at once, then ``keep_colors`` and
    ``strength`` (:func:`cglib.inference.adjust_colors`); carried from frame to frame, or
    frame by frame when ``carried`` is None."""
    if carried is not None:
        carried.mark_starts(photos)
    outputs = images.to_images(inference.generate(model, images.to_tensor(photos), settings))
    cartoons = [inference.adjust_colors(photo, cartoon, keep_colors, strength)
                for photo, cartoon in zip(photos, outputs, strict=True)]
    return cartoons if carried is None else carried.blend(photos, cartoons)


def cartoonize_frames(generator: nn.Module, frames: Sequence[np.ndarray], *,
                      temporal: bool | TemporalSettings = True, batch_size: int = 4,
                      tile: int | str = "auto", device: str | torch.device | None = None,
                      precision: str = "auto", keep_colors: bool = False,
                      strength: float = 1.0) -> list[np.ndarray]:
    """The cartoons of a video's ``frames`` (H x W x 3 uint8 RGB, one size, in order) as
    :func:`cglib.video.cartoonize_video` makes them from a file: ``temporal`` True (the
    default :class:`TemporalSettings`), settings, or False (frame by frame, each frame what
    :func:`cglib.inference.cartoonize` makes of it); the other options as cartoonize takes
    them. For measuring and for frames already in memory."""
    photos = [inference.check_image(frame, index) for index, frame in enumerate(frames)]
    settings = inference.Settings.resolve(generator, device, precision, tile)
    carried = state_for(temporal)
    cartoons: list[np.ndarray] = []
    with inference.evaluating(generator, settings) as evaluated, \
            carrying(carried, evaluated) as model:
        for start in range(0, len(photos), batch_size):
            cartoons += next_cartoons(model, photos[start:start + batch_size], settings, carried,
                                      keep_colors, strength)
    return cartoons


def state_for(temporal: bool | TemporalSettings) -> TemporalState | None:
    """What a video carries from frame to frame with ``temporal`` (True: the default
    :class:`TemporalSettings`; settings; False: nothing, None)."""
    if temporal is False:
        return None
    return TemporalState(None if temporal is True else temporal)


def carrying(carried: TemporalState | None, model: nn.Module
             ) -> contextlib.AbstractContextManager[nn.Module]:
    """``model`` with its statistics carried by ``carried`` (:meth:`TemporalState.carrying`),
    or as it is when ``carried`` is None."""
    return contextlib.nullcontext(model) if carried is None else carried.carrying(model)
