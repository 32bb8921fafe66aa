"""Temporal cartoonization: less flicker than frame by frame on a pan, a zoom and a moving
square, every frame close to its own cartoon, a cut starting afresh, and nothing changed when
it is off."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cglib import authors, demodata, flow, images, inference, metrics, pretrained, temporal
from cglib.temporal import TemporalSettings

FP32 = {"device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module")
def generator():
    """The released Hayao generator where CGLIB_WEIGHTS_DIR holds it, else a narrow one with
    random weights in the official layout (the same network, fast)."""
    path = Path(os.environ.get("CGLIB_WEIGHTS_DIR", "/nonexistent")) / "cartoongan-hayao.pth"
    if path.is_file():
        return pretrained.load(path, device="cpu").eval()
    return pretrained.from_official(authors.random_state(seed=1, width=8)).eval()


def photo(name: str = "chelsea") -> np.ndarray:
    return images.read_image(demodata.source_path("skimage", f"data/{name}.png"))


def largest_gap(outputs, references) -> int:
    """The largest difference, in levels, between two lists of frames."""
    return max(int(np.abs(a.astype(int) - b).max())
               for a, b in zip(outputs, references, strict=True))


def worst_psnr(outputs, references) -> float:
    return min(metrics.psnr(a, b) for a, b in zip(outputs, references, strict=True))


@pytest.mark.parametrize("motion", demodata.MOTIONS)
def test_temporal_flickers_less_and_keeps_each_frame_close_to_its_cartoon(generator, motion):
    frames = demodata.clip_frames(photo(), motion, frames=8, width=256, height=192)
    single = inference.cartoonize(generator, frames, **FP32)
    carried = temporal.cartoonize_frames(generator, frames, **FP32)
    before, after = flow.warping_error(frames, single), flow.warping_error(frames, carried)
    assert after <= 0.7 * before, (motion, before, after)  # at least 30% less
    assert worst_psnr(carried, single) >= 30
    # the first frame has nothing to carry: its own cartoon, float rounding aside
    assert np.abs(carried[0].astype(int) - single[0]).max() <= 1


def test_a_cut_starts_afresh_at_its_frame(generator):
    first = demodata.clip_frames(photo("chelsea"), "pan", frames=4, width=128, height=96)
    second = demodata.clip_frames(photo("coffee"), "pan", frames=3, width=128, height=96)
    frames = first + second
    assert [temporal.is_cut(a, b) for a, b in zip(frames, frames[1:], strict=False)] == [
        False, False, False, True, False, False]
    single = inference.cartoonize(generator, frames, **FP32)
    carried = temporal.cartoonize_frames(generator, frames, batch_size=3, **FP32)
    # the cut frame (4) is its own cartoon (float rounding aside), the next ones carry again
    assert np.abs(carried[4].astype(int) - single[4]).max() <= 1
    assert not np.array_equal(carried[3], single[3]) and not np.array_equal(carried[5], single[5])


def test_nothing_carried_is_frame_by_frame_and_off_is_exactly_it(generator):
    frames = demodata.clip_frames(photo(), "square", frames=5, width=96, height=64)
    single = inference.cartoonize(generator, frames, **FP32)
    off = temporal.cartoonize_frames(generator, frames, temporal=False, batch_size=2, **FP32)
    assert all(np.array_equal(a, b) for a, b in zip(off, single, strict=True))
    # the carried normalization with momentum 0 is the instance normalization, recomputed
    nothing = TemporalSettings(momentum=0, blend=0)
    plain = temporal.cartoonize_frames(generator, frames, temporal=nothing, batch_size=2, **FP32)
    assert largest_gap(plain, single) <= 1


def test_statistics_carry_the_same_in_exact_tiles_as_whole(generator):
    frames = demodata.clip_frames(photo(), "square", frames=4, width=96, height=72)
    carried = TemporalSettings(momentum=0.5, blend=0)
    whole = temporal.cartoonize_frames(generator, frames, temporal=carried, batch_size=4, **FP32)
    tiled = temporal.cartoonize_frames(generator, frames, temporal=carried, batch_size=1,
                                       tile=64, **FP32)
    single = inference.cartoonize(generator, frames, **FP32)
    assert largest_gap(whole, tiled) <= 1
    assert not np.array_equal(whole[3], single[3])  # the statistics were carried


def test_the_statistics_are_a_moving_average():
    state = temporal.TemporalState(TemporalSettings(momentum=0.25))
    norm = temporal.CarriedNorm(torch.nn.InstanceNorm2d(2, affine=True), state)
    state.starts = [True, False, True]
    x = np.array([1.0, 2.0]), np.array([4.0, 8.0])
    means = [norm.carry(torch.tensor(m), torch.tensor(v), s)[0].tolist()
             for (m, v), s in zip([(x[0], x[0]), (x[1], x[1]), (x[1], x[1])], state.starts,
                                  strict=True)]
    assert means == [[1.0, 2.0], [0.25 * 1 + 0.75 * 4, 0.25 * 2 + 0.75 * 8], [4.0, 8.0]]


@pytest.mark.parametrize("kernel", ["batch norm statistics", "missing (MPS)"])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 0.01)])
def test_the_carried_normalization_is_the_formula_in_float64(dtype, tolerance, kernel,
                                                              monkeypatch):
    if kernel.startswith("missing"):
        def missing(*args):
            raise NotImplementedError("Could not run 'aten::batch_norm_update_stats' with "
                                      "arguments from the 'MPS' backend")
        monkeypatch.setattr(torch, "batch_norm_update_stats", missing)
    torch.manual_seed(0)
    state = temporal.TemporalState(TemporalSettings(momentum=0.25))
    norm = temporal.CarriedNorm(torch.nn.InstanceNorm2d(3, affine=True), state)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    # channels far from zero mean (statistics rounded to bf16 would miss by tenths), three
    # frames that differ, the third a cut
    x = torch.randn(3, 3, 20, 24) * torch.tensor([0.5, 1.0, 1.0])[:, None, None] + \
        torch.tensor([2.0, -1.0, 50.0])[:, None, None] + \
        torch.tensor([0.0, 1.5, -2.0])[:, None, None, None]
    state.starts = [True, False, True]
    y = norm(x.to(dtype)).double()
    variance, mean = torch.var_mean(x.to(dtype).double(), dim=(2, 3), correction=0)
    mean[1] = 0.25 * mean[0] + 0.75 * mean[1]
    variance[1] = 0.25 * variance[0] + 0.75 * variance[1]
    expected = (x.to(dtype).double() - mean[..., None, None]) / torch.sqrt(
        variance[..., None, None] + norm.eps) * norm.weight.double()[:, None, None] + \
        norm.bias.double()[:, None, None]
    assert (y - expected).abs().max() <= tolerance * expected.abs().max()


def test_one_frame_keeps_its_memory_layout():
    # a size-1 batch axis with another stride reads as another layout: every next layer copies
    state = temporal.TemporalState()
    state.starts = [True]
    norm = temporal.CarriedNorm(torch.nn.InstanceNorm2d(4, affine=True), state)
    x = torch.randn(1, 4, 6, 5).contiguous(memory_format=torch.channels_last)
    assert norm(x).stride() == x.stride()
    state.starts = [False, False]
    assert norm(torch.cat([x, x])).is_contiguous(memory_format=torch.channels_last)
    plain = inference.ChannelsLastNorm.like(torch.nn.InstanceNorm2d(4, affine=True))
    assert plain(x).stride() == x.stride()


def test_carrying_puts_the_normalizations_back(generator):
    state = temporal.TemporalState()
    with pytest.raises(RuntimeError), state.carrying(generator) as model:
        assert sum(isinstance(m, temporal.CarriedNorm) for m in model.modules()) == 21
        raise RuntimeError("stop")
    assert not any(isinstance(m, temporal.CarriedNorm) for m in generator.modules())


@pytest.mark.parametrize(("settings", "message"), [
    ({"momentum": 1.0}, "momentum=1.0: give a number from 0"),
    ({"blend": 1.5}, "blend=1.5: give a number from 0"),
    ({"max_change": -1}, "max_change=-1: give levels from 0 up")])
def test_wrong_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TemporalSettings(**settings)
