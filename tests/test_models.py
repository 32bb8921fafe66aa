"""Generator and discriminator: parameter counts, shapes, FLOPs, receptive field, norms, init."""

import pytest
import torch
from torch import nn

from cglib import architecture, models


def conv_parameters(kernel: int, channels_in: int, channels_out: int) -> int:
    return kernel * kernel * channels_in * channels_out + channels_out


def generator_parameters(width: int, residual_blocks: int) -> int:
    """Counted from the generator table of docs/paper.md#the-generator: every conv has a bias,
    every norm a scale and a shift."""
    w = width
    flat = conv_parameters(7, 3, w) + 2 * w
    down = (conv_parameters(3, w, 2 * w) + conv_parameters(3, 2 * w, 2 * w) + 4 * w
            + conv_parameters(3, 2 * w, 4 * w) + conv_parameters(3, 4 * w, 4 * w) + 8 * w)
    residual = residual_blocks * 2 * (conv_parameters(3, 4 * w, 4 * w) + 8 * w)
    up = (conv_parameters(3, 4 * w, 2 * w) + conv_parameters(3, 2 * w, 2 * w) + 4 * w
          + conv_parameters(3, 2 * w, w) + conv_parameters(3, w, w) + 2 * w)
    return flat + down + residual + up + conv_parameters(7, w, 3)


def count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_parameter_counts_match_the_paper():
    assert count(models.Generator()) == 11_129_667 == generator_parameters(64, 8)
    assert count(models.Discriminator()) == 1_129_665
    assert count(models.Generator(width=16, residual_blocks=3)) == generator_parameters(16, 3)
    # batch norm has the same learned parameters as affine instance norm
    assert count(models.Generator(norm="batch")) == 11_129_667


def test_blocks_are_named_like_the_paper():
    names = [name for name, _ in models.Generator().named_children()]
    assert names == ["flat", "down1", "down2", "residual_blocks", "up1", "up2", "output"]
    assert len(models.Generator(residual_blocks=5).residual_blocks) == 5
    assert isinstance(models.Generator().up1.conv_stride_half, nn.ConvTranspose2d)


def test_shapes_and_output_range():
    generator = models.Generator(width=8, residual_blocks=2)
    x = torch.rand(2, 3, 36, 52) * 2 - 1
    y = generator(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1
    scores = models.Discriminator(width=8)(x)
    assert scores.shape == (2, 1, 9, 13)


def test_generator_takes_any_size_and_rounds_up_to_a_multiple_of_4():
    generator = models.Generator(width=4, residual_blocks=1)
    for height, width, expected in ((30, 32, (32, 32)), (5, 9, (8, 12)), (37, 41, (40, 44))):
        assert generator(torch.zeros(1, 3, height, width)).shape[-2:] == expected


def test_instance_norm_is_the_authors_and_batch_norm_the_papers():
    norm = models.Generator().flat.norm
    assert isinstance(norm, nn.InstanceNorm2d)
    assert norm.affine and not norm.track_running_stats and norm.eps == 1e-5
    assert models.Generator(epsilon=1e-9).residual_blocks[0].body.norm2.eps == 1e-9
    assert isinstance(models.Discriminator(norm="batch").feature.norm, nn.BatchNorm2d)
    with pytest.raises(ValueError, match="instance, batch"):
        models.Generator(norm="layer")


def test_instance_norm_after_the_first_conv_ignores_brightness_and_contrast():
    """conv(a x + c) = a conv(x) + const per channel, which instance norm removes: G(a x + c)
    equals G(x) exactly, up to epsilon."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    changed = 0.5 * x + torch.tensor([0.2, -0.1, 0.3]).view(1, 3, 1, 1)
    generator = models.Generator(width=8, residual_blocks=1, epsilon=1e-9)
    assert generator(x).std() > 0.1
    torch.testing.assert_close(generator(changed), generator(x), atol=1e-4, rtol=0)


def test_init_weights_and_zero_conv_biases():
    torch.manual_seed(0)
    generator = models.Generator()
    weights = torch.cat([m.weight.flatten() for m in generator.modules()
                         if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(weights.mean().item()) < 1e-4
    assert weights.std().item() == pytest.approx(0.02, rel=0.01)
    scales = torch.cat([m.weight for m in generator.modules() if isinstance(m, nn.InstanceNorm2d)])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01)
    for layer in generator.modules():
        if isinstance(layer, nn.Conv2d):
            layer.bias.data.fill_(0.5)
    models.zero_conv_biases(generator)
    biases = [m.bias for m in generator.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(torch.count_nonzero(bias) == 0 for bias in biases)
    # norm shifts are not convolution biases and stay as they are
    generator.flat.norm.bias.data.fill_(0.5)
    models.zero_conv_biases(generator)
    assert generator.flat.norm.bias.min() == 0.5


def test_flops_per_block_match_the_paper():
    """Multiply-adds x 2 of every conv, by hand: about 109 GFLOP at 256x256
    (docs/paper.md#the-generator)."""
    def conv_flops(size: int, kernel: int, channels_in: int, channels_out: int) -> int:
        return 2 * size * size * kernel * kernel * channels_in * channels_out

    expected = {
        "flat": conv_flops(256, 7, 3, 64),
        "down1": conv_flops(128, 3, 64, 128) + conv_flops(128, 3, 128, 128),
        "down2": conv_flops(64, 3, 128, 256) + conv_flops(64, 3, 256, 256),
        "residual_blocks": 16 * conv_flops(64, 3, 256, 256),
        # the transposed conv scatters each of its 64x64 inputs through the kernel
        "up1": conv_flops(64, 3, 256, 128) + conv_flops(128, 3, 128, 128),
        "up2": conv_flops(128, 3, 128, 64) + conv_flops(256, 3, 64, 64),
        "output": conv_flops(256, 7, 64, 3),
    }
    blocks = architecture.blocks(models.Generator(), (256, 256))
    assert {block.name: block.flops for block in blocks} == expected
    assert [block.output_shape for block in blocks] == [
        (1, 64, 256, 256), (1, 128, 128, 128), (1, 256, 64, 64), (1, 256, 64, 64),
        (1, 128, 128, 128), (1, 64, 256, 256), (1, 3, 256, 256)]
    assert sum(block.parameters for block in blocks) == 11_129_667
    total = architecture.count_flops(models.Generator(), (256, 256))
    assert total == sum(expected.values()) == 108_766_691_328
    assert architecture.count_flops(models.Generator(), (512, 512)) == 4 * total


def test_receptive_field_of_the_discriminator_is_37_pixels():
    """From the layer list, and seen: the input pixels that move one score (batch norm in eval
    mode keeps every layer local; instance norm's statistics would see the whole image)."""
    discriminator = models.Discriminator(norm="batch").eval()
    assert architecture.receptive_field(discriminator) == 37
    x = torch.randn(1, 3, 96, 96, requires_grad=True)
    discriminator(x)[0, 0, 12, 12].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)))
    columns = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)))
    assert rows.max() - rows.min() + 1 == 37
    assert columns.max() - columns.min() + 1 == 37
    with pytest.raises(ValueError, match="transposed"):
        architecture.receptive_field(models.Generator())
