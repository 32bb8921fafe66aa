"""Optical flow between video frames, and the flicker it measures: the warping error.

The warping error is how the video-consistency literature (Lai et al., "Learning Blind Video
Temporal Consistency", ECCV 2018) measures flicker: the optical flow between two consecutive
*input* frames says where each pixel of the current frame was in the previous one; the
previous *output* frame, warped along that flow onto the current one, should equal the current
output wherever the pixel was visible in both frames. The error is the mean absolute
difference over those pixels, in levels of 255:

$$E_t = \\frac{1}{|V_t|} \\sum_{x \\in V_t} \\lvert O_t(x) - O_{t-1}(x + F_{t \\to t-1}(x))
\\rvert$$

where $F_{t \\to t-1}$ is the flow from frame t back to frame t-1 and $V_t$ the pixels the
forward-backward check keeps: following the flow back and then forward again returns to the
start (within the tolerance of Lai et al.), and the pixel's source lies inside the frame.
Occluded and uncovered pixels fail the check. Flow is OpenCV's DIS (dense inverse search):
offline, no weights, deterministic.

Frames are H x W x 3 uint8 RGB arrays; flows are H x W x 2 float32 (x, y) displacements in
pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cglib import images


def optical_flow(source: np.ndarray, target: np.ndarray, fast: bool = False) -> np.ndarray:
    """Dense flow from ``source`` to ``target`` (both H x W x 3 uint8 RGB): H x W x 2 float32,
    so that ``source(x)`` is seen at ``target(x + flow(x))``. DIS's medium preset, or its
    fast one (about 3 times cheaper, coarser) with ``fast``."""
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in (source, target)]
    preset = cv2.DISOPTICAL_FLOW_PRESET_FAST if fast else cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
    return cv2.DISOpticalFlow_create(preset).calc(gray[0], gray[1], None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` (H x W x C) read at ``x + flow(x)`` for each pixel x (bilinear, the border
    repeated): with the flow from frame t to frame t-1, frame t-1 moved onto frame t. Same
    shape and dtype as ``image``."""
    height, width = flow.shape[:2]
    columns, rows = np.meshgrid(np.arange(width, dtype=np.float32),
                                np.arange(height, dtype=np.float32))
    return cv2.remap(image, columns + flow[..., 0], rows + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def visible(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """H x W bool: the pixels of frame t seen in frame t-1 too, from the flow ``backward``
    (t to t-1) and ``forward`` (t-1 to t). Kept where the round trip returns near the start,
    $|F_b + F_f(x + F_b)|^2 < 0.01\\,(|F_b|^2 + |F_f(x + F_b)|^2) + 0.5$ (Lai et al.), and the
    source pixel is inside the frame."""
    height, width = backward.shape[:2]
    back_again = warp(forward, backward)
    gap = np.sum((backward + back_again) ** 2, axis=2)
    tolerance = 0.01 * (np.sum(backward**2, axis=2) + np.sum(back_again**2, axis=2)) + 0.5
    columns, rows = np.meshgrid(np.arange(width), np.arange(height))
    x, y = columns + backward[..., 0], rows + backward[..., 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return (gap < tolerance) & inside


def frame_warping_errors(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]
                         ) -> list[float]:
    """The warping error of each frame after the first (see the module docstring), in
    levels of 255: ``outputs`` (H x W x 3 uint8 RGB, one per input frame) moved along the
    flow of ``inputs`` (the same size). ``outputs`` may be ``inputs`` themselves (the
    input's own flicker: near 0 where the flow explains the motion). A frame with no visible
    pixel counts 0."""
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} input frames but {len(outputs)} output frames; give "
                         "one output per input")
    for index, (source, output) in enumerate(zip(inputs, outputs, strict=True)):
        images.check_rgb(source, f"input frame {index}")
        images.check_rgb(output, f"output frame {index}")
        if source.shape != output.shape:
            raise ValueError(f"output frame {index} is {output.shape}, its input "
                             f"{source.shape}; give outputs of the inputs' size")
    errors = []
    for index in range(1, len(inputs)):
        backward = optical_flow(inputs[index], inputs[index - 1])
        forward = optical_flow(inputs[index - 1], inputs[index])
        mask = visible(backward, forward)
        moved = warp(outputs[index - 1], backward).astype(np.float32)
        difference = np.abs(outputs[index].astype(np.float32) - moved)
        errors.append(float(difference[mask].mean()) if mask.any() else 0.0)
    return errors


def warping_error(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> float:
    """The mean of :func:`frame_warping_errors` over the video, in levels of 255 (0 for a
    single frame)."""
    errors = frame_warping_errors(inputs, outputs)
    return float(np.mean(errors)) if errors else 0.0
