"""The authors' generator as their released PyTorch code runs it, written a second time and apart
from :mod:`cglib.models`: a function of the official tensors (the 94 of a released
``cartoongan-<style>.pth``, under their own names) built from ``torch.nn.functional`` alone,
and random tensors in the same format.

It imports nothing of cglib, so that it stays an independent check: the tests compare
:func:`cglib.pretrained.from_official` and :func:`cglib.inference.cartoonize` against
:func:`forward`, and ``python -m cglib bench generator`` times it as the authors' baseline. The
layers and the file format: docs/paper.md#the-released-generators.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_BGR = [2, 1, 0]

#: The instance norm's epsilon in the PyTorch conversion of the released weights.
EPSILON = 1e-9


def official_shapes(width: int = 64) -> dict[str, tuple[int, ...]]:
    """The tensors of an official file in the file's order, key -> shape: 94 tensors and
    11,129,667 numbers at the released ``width`` 64 (the flat convolution's channels; 128 and
    256 deeper). A smaller ``width`` gives the same network, narrower, for fast tests."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, channels_in: int, channels_out: int, kernel: int) -> None:
        shapes[f"{name}.weight"] = (channels_out, channels_in, kernel, kernel)
        shapes[f"{name}.bias"] = (channels_out,)

    def norm(name: str, channels: int) -> None:
        shapes[f"{name}.scale"] = shapes[f"{name}.shift"] = (channels,)

    def transposed(name: str, channels_in: int, channels_out: int) -> None:
        shapes[f"{name}.weight"] = (channels_in, channels_out, 3, 3)  # torch's layout: in first
        shapes[f"{name}.bias"] = (channels_out,)

    conv("conv01_1", 3, width, 7)
    norm("in01_1", width)
    for number, channels in ((2, 2 * width), (3, 4 * width)):
        conv(f"conv{number:02d}_1", channels // 2, channels, 3)
        conv(f"conv{number:02d}_2", channels, channels, 3)
        norm(f"in{number:02d}_1", channels)
    for block in range(4, 12):
        for half in (1, 2):
            conv(f"conv{block:02d}_{half}", 4 * width, 4 * width, 3)
            norm(f"in{block:02d}_{half}", 4 * width)
    for number, norm_number, channels in ((1, 12, 2 * width), (2, 13, width)):
        transposed(f"deconv{number:02d}_1", 2 * channels, channels)
        conv(f"deconv{number:02d}_2", channels, channels, 3)
        norm(f"in{norm_number}_1", channels)
    conv("deconv03_1", width, 3, 7)
    return shapes


def random_state(seed: int = 0, width: int = 64) -> dict[str, torch.Tensor]:
    """Random tensors in the official format (N(0, 0.05^2), drawn in the file's order from a
    generator seeded with ``seed``): the same ``seed`` and ``width`` give the same tensors."""
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=generator) * 0.05
            for key, shape in official_shapes(width).items()}


def instance_norm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                  epsilon: float = EPSILON) -> torch.Tensor:
    """The authors' instance normalization of ``x`` (N, C, H, W): each channel of each image
    to mean 0 and biased variance 1 over its H x W values, then ``* scale + shift`` (C,). As
    their code computes it: the unbiased variance of the flattened view, times (n - 1) / n."""
    count = x.shape[2] * x.shape[3]
    flat = x.flatten(2)
    mean = flat.mean(2)[..., None, None]
    variance = flat.var(2)[..., None, None] * ((count - 1) / count)
    return (x - mean) / torch.sqrt(variance + epsilon) * scale[:, None, None] + shift[:, None, None]


def network(state: dict[str, torch.Tensor], bgr: torch.Tensor,
            epsilon: float = EPSILON) -> torch.Tensor:
    """The released network: (N, 3, H, W) float in [-1, 1], BGR -> (N, 3, H', W') in [-1, 1],
    BGR. H' and W' are H and W rounded up to multiples of 4 (the stride-2 convolutions round
    up, the transposed ones double). ``state``: official tensors (:func:`official_shapes`)."""
    def conv(x: torch.Tensor, name: str, stride: int = 1, padding: int = 0) -> torch.Tensor:
        return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], stride, padding)

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return instance_norm(x, state[f"{name}.scale"], state[f"{name}.shift"], epsilon)

    def reflect(x: torch.Tensor, size: int) -> torch.Tensor:
        return F.pad(x, (size, size, size, size), mode="reflect")

    def up(x: torch.Tensor, number: int) -> torch.Tensor:  # "3x3, stride 1/2"
        name = f"deconv{number:02d}_1"
        return F.conv_transpose2d(x, state[f"{name}.weight"], state[f"{name}.bias"], stride=2,
                                  padding=1, output_padding=1)

    x = F.relu(norm(conv(reflect(bgr, 3), "conv01_1"), "in01_1"))
    x = F.relu(norm(conv(conv(x, "conv02_1", 2, 1), "conv02_2", 1, 1), "in02_1"))
    x = F.relu(norm(conv(conv(x, "conv03_1", 2, 1), "conv03_2", 1, 1), "in03_1"))
    for block in range(4, 12):
        y = F.relu(norm(conv(reflect(x, 1), f"conv{block:02d}_1"), f"in{block:02d}_1"))
        x = x + norm(conv(reflect(y, 1), f"conv{block:02d}_2"), f"in{block:02d}_2")
    x = F.relu(norm(conv(up(x, 1), "deconv01_2", 1, 1), "in12_1"))
    x = F.relu(norm(conv(up(x, 2), "deconv02_2", 1, 1), "in13_1"))
    return torch.tanh(conv(reflect(x, 3), "deconv03_1"))


def forward(state: dict[str, torch.Tensor], rgb: torch.Tensor,
            epsilon: float = EPSILON) -> torch.Tensor:
    """The authors' test code around :func:`network`: (N, 3, H, W) float in [-1, 1], RGB ->
    BGR, the network, -> RGB; (N, 3, H', W') in [-1, 1], H' and W' rounded up to multiples
    of 4 (crop to H x W for the photo's own size)."""
    return network(state, rgb[:, _BGR], epsilon)[:, _BGR]
