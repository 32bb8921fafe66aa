"""CartoonGAN's generator and discriminator (the paper's Figure 2), block by block.

The generator reads top to bottom like the figure: flat convolution, two down-convolutions,
eight residual blocks, two up-convolutions, output convolution. Every cglib generator takes and
returns RGB images as (N, 3, H, W) float tensors in [-1, 1].

Normalization ``"instance"`` (the default) is what the authors' code and every released weight
file use: affine, no running statistics, biased variance. ``"batch"`` is what the paper's text
names. This module knows nothing of training or of the official weight files (``pretrained``
maps those onto these modules; :mod:`cglib.architecture` measures them).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

NORMS = ("instance", "batch")

#: Kernel size and padding of the 3x3 convolutions and of the 7x7 flat and output convolutions.
_KERNEL, _FLAT_KERNEL = 3, 7


def make_norm(norm: str, channels: int, epsilon: float = 1e-5) -> nn.Module:
    """Instance normalization (affine, no running statistics) or batch normalization.

    ``epsilon`` is added to the variance: the Torch original used 1e-5, the PyTorch conversion
    of the released weights 1e-9.
    """
    if norm == "instance":
        return nn.InstanceNorm2d(channels, eps=epsilon, affine=True, track_running_stats=False)
    if norm == "batch":
        return nn.BatchNorm2d(channels, eps=epsilon)
    raise ValueError(f"norm={norm!r} is not a normalization; use one of {', '.join(NORMS)}")


def _down_convolution(channels_in: int, channels_out: int, norm: str,
                      epsilon: float) -> nn.Sequential:
    """3x3 conv stride 2, 3x3 conv stride 1 (both zero padding 1), norm, ReLU: halves H and W."""
    return nn.Sequential(OrderedDict(
        conv_stride2=nn.Conv2d(channels_in, channels_out, _KERNEL, stride=2, padding=1),
        conv=nn.Conv2d(channels_out, channels_out, _KERNEL, stride=1, padding=1),
        norm=make_norm(norm, channels_out, epsilon),
        relu=nn.ReLU(inplace=True),
    ))


def _up_convolution(channels_in: int, channels_out: int, norm: str,
                    epsilon: float) -> nn.Sequential:
    """The paper's "3x3, stride 1/2" convolution, a transposed convolution that doubles H and W,
    then 3x3 conv stride 1 (zero padding 1), norm, ReLU."""
    return nn.Sequential(OrderedDict(
        conv_stride_half=nn.ConvTranspose2d(channels_in, channels_out, _KERNEL, stride=2,
                                            padding=1, output_padding=1),
        conv=nn.Conv2d(channels_out, channels_out, _KERNEL, stride=1, padding=1),
        norm=make_norm(norm, channels_out, epsilon),
        relu=nn.ReLU(inplace=True),
    ))


class ResidualBlock(nn.Module):
    """[reflection pad 1, 3x3 conv, norm, ReLU, reflection pad 1, 3x3 conv, norm] + identity.

    No activation after the sum, as in the authors' code. (N, C, H, W) in, same shape out.
    """

    def __init__(self, channels: int, norm: str = "instance", epsilon: float = 1e-5) -> None:
        super().__init__()
        self.body = nn.Sequential(OrderedDict(
            pad1=nn.ReflectionPad2d(1),
            conv1=nn.Conv2d(channels, channels, _KERNEL),
            norm1=make_norm(norm, channels, epsilon),
            relu=nn.ReLU(inplace=True),
            pad2=nn.ReflectionPad2d(1),
            conv2=nn.Conv2d(channels, channels, _KERNEL),
            norm2=make_norm(norm, channels, epsilon),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """CartoonGAN's generator: photo in, cartoon out.

    Input and output: (N, 3, H, W) float RGB in [-1, 1] (output through tanh); see
    :meth:`forward` for sizes that are not multiples of 4. ``width`` is the flat
    convolution's channel count (64 in the paper; the down-convolutions use 2 and 4 times it),
    ``residual_blocks`` their number (8). With the defaults: 11,129,667 parameters. Weights
    start as :func:`init_weights` sets them. :attr:`config` holds the constructor's arguments
    (what :func:`cglib.pretrained.save_generator` stores).
    """

    def __init__(self, width: int = 64, residual_blocks: int = 8, norm: str = "instance",
                 epsilon: float = 1e-5) -> None:
        super().__init__()
        make_norm(norm, 1)  # fail early, with the message, on an unknown norm
        self.config = {"width": width, "residual_blocks": residual_blocks, "norm": norm,
                       "epsilon": epsilon}
        self.flat = nn.Sequential(OrderedDict(
            pad=nn.ReflectionPad2d(_FLAT_KERNEL // 2),
            conv=nn.Conv2d(3, width, _FLAT_KERNEL),
            norm=make_norm(norm, width, epsilon),
            relu=nn.ReLU(inplace=True),
        ))
        self.down1 = _down_convolution(width, 2 * width, norm, epsilon)
        self.down2 = _down_convolution(2 * width, 4 * width, norm, epsilon)
        self.residual_blocks = nn.Sequential(
            *[ResidualBlock(4 * width, norm, epsilon) for _ in range(residual_blocks)]
        )
        self.up1 = _up_convolution(4 * width, 2 * width, norm, epsilon)
        self.up2 = _up_convolution(2 * width, width, norm, epsilon)
        self.output = nn.Sequential(OrderedDict(
            pad=nn.ReflectionPad2d(_FLAT_KERNEL // 2),
            conv=nn.Conv2d(width, 3, _FLAT_KERNEL),
            tanh=nn.Tanh(),
        ))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [-1, 1] -> (N, 3, 4 ceil(H/4), 4 ceil(W/4)) RGB in [-1, 1].

        Any H and W from 5 up (the reflection padding of the residual blocks needs 2 pixels at
        a quarter of the resolution). Where H or W is not a multiple of 4 the output is up to 3
        pixels larger, exactly as the authors' network: its top-left H x W is the picture
        (:func:`cglib.inference.cartoonize` crops it).
        """
        x = self.flat(x)
        x = self.down1(x)
        x = self.down2(x)
        x = self.residual_blocks(x)
        x = self.up1(x)
        x = self.up2(x)
        return self.output(x)


class Discriminator(nn.Module):
    """CartoonGAN's discriminator, a shallow patch critic (LeakyReLU slope 0.2).

    Input: (N, 3, H, W) float RGB in [-1, 1]. Output: (N, 1, H/4, W/4) raw scores (no sigmoid:
    the least-squares loss takes them as they are), each judging a 37x37 patch
    (:func:`receptive_field`). ``width`` is the first convolution's channel count (32; then 2,
    4 and 8 times it). With the defaults: 1,129,665 parameters.
    """

    def __init__(self, width: int = 32, norm: str = "instance", epsilon: float = 1e-5) -> None:
        super().__init__()
        make_norm(norm, 1)
        self.config = {"width": width, "norm": norm, "epsilon": epsilon}
        self.flat = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, width, _KERNEL, padding=1),
            lrelu=nn.LeakyReLU(0.2, inplace=True),
        ))
        self.down1 = self._down(width, 2 * width, 4 * width, norm, epsilon)
        self.down2 = self._down(4 * width, 4 * width, 8 * width, norm, epsilon)
        self.feature = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(8 * width, 8 * width, _KERNEL, padding=1),
            norm=make_norm(norm, 8 * width, epsilon),
            lrelu=nn.LeakyReLU(0.2, inplace=True),
        ))
        self.output = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(8 * width, 1, _KERNEL, padding=1),
        ))
        init_weights(self)

    @staticmethod
    def _down(channels_in: int, channels_mid: int, channels_out: int, norm: str,
              epsilon: float) -> nn.Sequential:
        """3x3 conv stride 2, LReLU, 3x3 conv stride 1, norm, LReLU: halves H and W."""
        return nn.Sequential(OrderedDict(
            conv_stride2=nn.Conv2d(channels_in, channels_mid, _KERNEL, stride=2, padding=1),
            lrelu1=nn.LeakyReLU(0.2, inplace=True),
            conv=nn.Conv2d(channels_mid, channels_out, _KERNEL, padding=1),
            norm=make_norm(norm, channels_out, epsilon),
            lrelu2=nn.LeakyReLU(0.2, inplace=True),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [-1, 1] -> (N, 1, ceil(H/4), ceil(W/4)) scores."""
        x = self.flat(x)
        x = self.down1(x)
        x = self.down2(x)
        x = self.feature(x)
        return self.output(x)


_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)
_NORMALIZATIONS = (nn.InstanceNorm2d, nn.BatchNorm2d)


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """The authors' initialization, in place: convolution weights N(0, 0.02), biases 0;
    normalization scales N(1, 0.02), shifts 0 (the DCGAN convention)."""
    for layer in module.modules():
        if isinstance(layer, _CONVOLUTIONS):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, _NORMALIZATIONS) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


@torch.no_grad()
def zero_conv_biases(module: nn.Module) -> None:
    """Set every convolution bias to zero, in place. The authors' trainer does this before every
    step (a bias in front of a normalization is cancelled by it anyway)."""
    for layer in module.modules():
        if isinstance(layer, _CONVOLUTIONS) and layer.bias is not None:
            layer.bias.zero_()
