"""Optical flow and the warping error: known answers on synthetic frames."""

import cv2
import numpy as np
import pytest

from cglib import flow


def texture(height: int = 96, width: int = 160, seed: int = 0) -> np.ndarray:
    """Smooth random texture, H x W x 3 uint8 in [40, 200] (no clipping when brightened)."""
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return np.rint(40 + 160 * smooth).astype(np.uint8)


def pan(frames: int = 5, step: int = 2) -> list[np.ndarray]:
    """A camera moving ``step`` pixels right per frame over :func:`texture`."""
    wide = texture(width=160 + frames * step)
    return [np.ascontiguousarray(wide[:, i * step:i * step + 160]) for i in range(frames)]


def test_a_pure_translation_has_no_warping_error_of_its_own():
    frames = pan()
    backward = flow.optical_flow(frames[1], frames[0])
    assert np.median(backward[..., 0]) == pytest.approx(2, abs=0.1)  # was at x + 2 before
    assert np.median(backward[..., 1]) == pytest.approx(0, abs=0.1)
    errors = flow.frame_warping_errors(frames, frames)
    assert len(errors) == 4 and max(errors) < 0.5


def test_a_brightness_flicker_is_measured_in_levels():
    still = texture()
    frames = [still] * 4
    flicker = [still + np.uint8(10 * (index % 2)) for index in range(4)]  # 0, +10, 0, +10
    assert flow.frame_warping_errors(frames, flicker) == pytest.approx([10, 10, 10], abs=0.05)
    assert flow.warping_error(frames, flicker) == pytest.approx(10, abs=0.05)
    assert flow.warping_error(frames, frames) == pytest.approx(0, abs=0.05)
    assert flow.warping_error(frames[:1], flicker[:1]) == 0.0


def test_a_shimmer_that_moves_with_the_camera_is_no_flicker_but_one_that_stays_is():
    frames = pan()
    # an output that follows the scene (the input darkened) against one with a fixed noise
    # pattern (uniform in [0, 30]: two unrelated draws differ by 10 on average)
    following = [frame // 2 for frame in frames]
    pattern = np.random.default_rng(1).integers(0, 31, (96, 160, 1), dtype=np.uint8)
    fixed = [frame // 2 + pattern for frame in frames]
    assert flow.warping_error(frames, following) < 0.5
    assert flow.warping_error(frames, fixed) == pytest.approx(10, abs=1.5)


def test_visibility_drops_pixels_from_outside_the_frame_and_broken_round_trips():
    backward = np.zeros((10, 20, 2), np.float32)
    backward[..., 0] = 3  # frame t's pixel x came from x + 3 in frame t-1
    forward = -backward
    mask = flow.visible(backward, forward)
    assert mask.sum() == 10 * 17 and not mask[:, 17:].any()  # the last 3 columns came from outside
    forward[:5] = 0  # the top half does not come back
    assert flow.visible(backward, forward).sum() == 5 * 17


def test_warp_moves_the_previous_frame_onto_the_current_one():
    frames = pan(frames=2, step=3)
    backward = np.zeros((96, 160, 2), np.float32)
    backward[..., 0] = 3
    assert np.array_equal(flow.warp(frames[0], backward)[:, :157], frames[1][:, :157])


def test_wrong_frames_are_refused_with_the_fix():
    frames = pan(frames=3)
    with pytest.raises(ValueError, match="3 input frames but 2 output frames; give one output"):
        flow.warping_error(frames, frames[:2])
    with pytest.raises(ValueError, match=r"output frame 1 is \(48, 80, 3\), its input"):
        flow.warping_error(frames, [frames[0], frames[1][::2, ::2], frames[2]])
