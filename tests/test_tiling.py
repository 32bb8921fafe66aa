"""The exact tiling engine: each convolution computes any span from its clipped input, the
instance-norm statistics summed over tiles are the whole image's, and the tiled forward
equals the whole-image forward (where naive tiles do not)."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cglib import inference, models, tiling


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1]: smooth colour blobs plus a little noise (uniform noise alone has
    instance-norm statistics that every tile shares, which would hide tiling errors)."""
    generator = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, max(2, height // 16), max(2, width // 16), generator=generator)
    smooth = F.interpolate(small * 2 - 1, size=(height, width), mode="bicubic")
    noise = (torch.rand(1, 3, height, width, generator=generator) - 0.5) * 0.1
    return (smooth + noise).clamp(-1, 1)


@pytest.fixture(scope="module")
def generator():
    """A narrow instance-norm generator with random affine normalizations."""
    torch.manual_seed(0)
    network = models.Generator(width=8, residual_blocks=2).eval()
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return network


def convolutions(ops: list) -> list[tiling.Convolution]:
    """Every Convolution of ``ops``, those inside residual blocks included."""
    found = []
    for op in ops:
        if isinstance(op, tiling.Residual):
            found += convolutions(list(op.operations))
        elif isinstance(op, tiling.Convolution):
            found.append(op)
    return found


def test_the_generator_is_seen_layer_by_layer(generator):
    ops = tiling.operations(generator)
    found = convolutions(ops)
    # flat, 2 x 2 down, 2 x 2 per residual block, 2 x 2 up, output
    assert len(found) == 1 + 4 + 2 * 2 + 4 + 1
    assert [op.reflect for op in (found[0], found[-1])] == [True, True]
    assert sum(op.transposed for op in found) == 2
    assert sum(isinstance(op, tiling.Residual) for op in ops) == 2


def test_each_convolution_computes_any_span_from_its_clipped_input(generator):
    """The halo: outputs [start, stop) of every convolution, computed from the input range
    ``input_range`` names (clipped to the image, border padding added where it was clipped),
    equal the same outputs of the whole convolution."""
    torch.manual_seed(1)
    height, width = 23, 30
    for op in convolutions(tiling.operations(generator)):
        x = torch.randn(1, op.layer.in_channels, height, width)
        padded = F.pad(x, [op.padding] * 4, mode="reflect") if op.reflect else x
        whole = op.layer(padded)
        assert whole.shape[-2:] == (op.output_length(height), op.output_length(width))
        for start, stop in ((0, 1), (0, 5), (3, 9), (7, whole.shape[-2])):
            spans = []
            for length in (height, width):
                low, high = op.input_range(start, stop)
                spans.append(tiling.Span(start, stop, (low, high), (max(low, 0),
                                                                    min(high, length))))
            rows, columns = spans
            crop = x[..., rows.input_clipped[0]:rows.input_clipped[1],
                     columns.input_clipped[0]:columns.input_clipped[1]]
            got = op.apply(crop, (rows, columns))
            assert torch.allclose(got, whole[..., start:stop, start:stop], atol=1e-5), (op, start)


def test_statistics_summed_over_tiles_are_the_whole_image_statistics():
    x = torch.randn(1, 5, 37, 41, dtype=torch.float64) * 3 + torch.arange(5.0).view(1, 5, 1, 1)
    moments = tiling._Moments()
    for top, bottom in tiling._spans(37, 4):
        for left, right in tiling._spans(41, 3):
            moments.add(x[..., top:bottom, left:right])
    variance, mean = torch.var_mean(x.reshape(5, -1), dim=1, correction=0)
    assert moments.count == 37 * 41
    assert torch.allclose(moments.mean, mean, atol=1e-6)
    assert torch.allclose(moments.squares / moments.count, variance, atol=1e-5)
    norm = nn.InstanceNorm2d(5, affine=True)
    expected = norm(x.float())
    affine = moments.affine(norm)
    assert (affine(x) - expected).abs().max() < 1e-4


@pytest.mark.parametrize("size,tile", [((200, 280), 64), ((257, 191), 96), ((97, 333), 64)])
def test_tiles_equal_the_whole_forward(generator, size, tile):
    x = smooth_image(*size, seed=tile)
    with torch.inference_mode():
        whole = inference.whole_forward(generator, x)
        tiled = tiling.tiled_forward(generator, x, tile)
        half = size[1] // 2
        naive = torch.cat([inference.whole_forward(generator, x[..., :half]),
                           inference.whole_forward(generator, x[..., half:])], dim=-1)
    assert tiled.shape == x.shape and tiled.dtype == torch.float32
    assert (whole - tiled).abs().max() < 1e-4
    assert (whole - naive).abs().max() > 0.05  # the check has teeth: naive tiles differ


def test_tiles_walk_batch_norm_too():
    torch.manual_seed(0)
    generator = models.Generator(width=8, residual_blocks=2, norm="batch").eval()
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    x = smooth_image(70, 90)
    with torch.inference_mode():
        whole = inference.whole_forward(generator, x)
        tiled = tiling.tiled_forward(generator, x, 64)
    assert (whole - tiled).abs().max() < 1e-4


def test_every_tile_runs_in_the_autocast_given_and_progress_counts_every_pixel(generator):
    x = smooth_image(100, 150)
    entered, seen = [], []

    def bf16() -> contextlib.AbstractContextManager:
        entered.append(1)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    with torch.inference_mode():
        fp32 = tiling.tiled_forward(generator, x, 64)
        mixed = tiling.tiled_forward(generator, x, 64, autocast=bf16, progress=seen.append)
    assert len(entered) > 10 and len(seen) >= len(entered)
    assert sum(seen) == pytest.approx(100 * 150)
    assert mixed.dtype == torch.float32
    assert 0 < (mixed - fp32).abs().max() < 0.2  # bf16 arithmetic, near fp32


def test_a_layer_it_cannot_tile_is_named():
    with pytest.raises(ValueError, match="tiled_forward cannot run a Dropout layer"):
        tiling.operations(nn.Sequential(nn.Conv2d(3, 3, 3), nn.Dropout()))
