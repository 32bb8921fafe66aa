"""What a network is made of, measured from the network itself: the output shape, parameters
and arithmetic (FLOPs) of each block, and the patch one output of a convolution chain sees.
Notebook 02 shows these next to the paper's Figure 2; :func:`cglib.viz.draw_generator` draws
them."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def _flops(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Floating-point operations of one convolution call: multiply-adds x 2 (biases ignored)."""
    kernel = layer.kernel_size[0] * layer.kernel_size[1]
    # a convolution computes each output pixel from the kernel's window; a transposed one
    # scatters each input pixel through the whole kernel: count the side that is dense
    pixels = inputs[0].shape[2:] if isinstance(layer, nn.ConvTranspose2d) else output.shape[2:]
    multiply_adds = (output.shape[0] * pixels[0] * pixels[1] * kernel
                     * layer.in_channels * layer.out_channels // layer.groups)
    return 2 * multiply_adds


@dataclass(frozen=True)
class Block:
    """One block of a model (a child of its top level) seen on one input."""

    name: str
    output_shape: tuple[int, ...]
    parameters: int
    flops: int


def blocks(model: nn.Module, input_size: tuple[int, int]) -> list[Block]:
    """Output shape (N=1), parameter count and FLOPs of every top-level block of ``model`` on one
    3-channel ``input_size`` = (H, W) image, in forward order.

    FLOPs count the convolutions and transposed convolutions (multiply-adds x 2, forward only);
    normalizations, activations and padding add well under 1%. Runs on a copy of the model on
    PyTorch's ``meta`` device: shapes only, no arithmetic, so it is instant at any size.
    """
    shadow = copy.deepcopy(model).to("meta")
    found: dict[str, list] = {}

    def count(layer: nn.Module, inputs: tuple, output: torch.Tensor, name: str) -> None:
        found[name][1] += _flops(layer, inputs, output)

    def record(block: nn.Module, inputs: tuple, output: torch.Tensor, name: str) -> None:
        found[name][0] = tuple(output.shape)

    handles = []
    for name, block in shadow.named_children():
        found[name] = [None, 0]
        handles.append(block.register_forward_hook(
            lambda b, i, o, name=name: record(b, i, o, name)))
        for layer in block.modules():
            if isinstance(layer, _CONVOLUTIONS):
                handles.append(layer.register_forward_hook(
                    lambda m, i, o, name=name: count(m, i, o, name)))
    try:
        with torch.no_grad():
            shadow(torch.empty(1, 3, *input_size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    parameters = dict(model.named_children())
    return [
        Block(name, shape, sum(p.numel() for p in parameters[name].parameters()), flops)
        for name, (shape, flops) in found.items() if shape is not None
    ]


def count_flops(model: nn.Module, input_size: tuple[int, int]) -> int:
    """FLOPs of one forward pass of ``model`` on one 3-channel ``input_size`` = (H, W) image:
    convolution multiply-adds x 2, counted with forward hooks (see :func:`blocks`). The
    generator at 256x256: about 108.8 GFLOP."""
    return sum(block.flops for block in blocks(model, input_size))


def receptive_field(model: nn.Module) -> int:
    """Side in pixels of the input patch that one output value of a plain chain of convolutions
    sees (the discriminator: 37), computed from its layers in order.

    Each layer of kernel k widens the field by (k - 1) times the product of the strides before
    it. Only for chains (no branches, no transposed convolutions); normalization is ignored
    (instance normalization's statistics do see the whole image).
    """
    field, jump = 1, 1
    for layer in model.modules():
        if isinstance(layer, nn.ConvTranspose2d):
            raise ValueError(f"{type(model).__name__} has a transposed convolution; "
                             "receptive_field handles plain convolution chains only")
        if isinstance(layer, nn.Conv2d):
            field += (layer.kernel_size[0] - 1) * layer.dilation[0] * jump
            jump *= layer.stride[0]
    return field
