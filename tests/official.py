"""The authors' generator written independently of cglib: a functional forward pass from
PAPER.md with torch.nn.functional only, over the official file's tensor names, and random
weights in the official format. Tests compare cglib against these."""

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cglib import pretrained


def official_forward(state: dict[str, torch.Tensor], rgb: torch.Tensor,
                     epsilon: float = 1e-9) -> torch.Tensor:
    """The official generator as its code runs: RGB in [-1, 1] -> BGR, forward, -> RGB."""
    def conv(x, name, stride=1, padding=0):
        return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], stride, padding)

    def norm(x, name):
        mean = x.mean(dim=(2, 3), keepdim=True)
        variance = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True)  # biased
        scale = state[f"{name}.scale"].view(1, -1, 1, 1)
        shift = state[f"{name}.shift"].view(1, -1, 1, 1)
        return (x - mean) / torch.sqrt(variance + epsilon) * scale + shift

    def reflect(x, size):
        return F.pad(x, (size, size, size, size), mode="reflect")

    x = rgb[:, [2, 1, 0]]
    x = F.relu(norm(conv(reflect(x, 3), "conv01_1"), "in01_1"))
    x = F.relu(norm(conv(conv(x, "conv02_1", 2, 1), "conv02_2", 1, 1), "in02_1"))
    x = F.relu(norm(conv(conv(x, "conv03_1", 2, 1), "conv03_2", 1, 1), "in03_1"))
    for block in range(4, 12):
        y = F.relu(norm(conv(reflect(x, 1), f"conv{block:02d}_1"), f"in{block:02d}_1"))
        x = x + norm(conv(reflect(y, 1), f"conv{block:02d}_2"), f"in{block:02d}_2")
    for number, norm_name in ((1, "in12_1"), (2, "in13_1")):
        x = F.conv_transpose2d(x, state[f"deconv{number:02d}_1.weight"],
                               state[f"deconv{number:02d}_1.bias"], stride=2, padding=1,
                               output_padding=1)
        x = F.relu(norm(conv(x, f"deconv{number:02d}_2", 1, 1), norm_name))
    x = torch.tanh(conv(reflect(x, 3), "deconv03_1"))
    return x[:, [2, 1, 0]]


def random_official_state(seed: int = 0, width: int = 64) -> dict[str, torch.Tensor]:
    """Random weights under the official names; ``width`` scales the channel counts (64, 128,
    256 in the released files) for fast tests."""
    rng = torch.Generator().manual_seed(seed)

    def scaled(shape):
        return tuple(size * width // 64 if size in (64, 128, 256) else size for size in shape)

    return {key: torch.randn(scaled(shape), generator=rng) * 0.05
            for key, shape in pretrained.official_shapes().items()}


def released_weights(style: str) -> Path:
    """The released ``style`` generator's file in ``CGLIB_WEIGHTS_DIR``; the test is skipped,
    saying why, where it is absent."""
    folder = os.environ.get("CGLIB_WEIGHTS_DIR")
    path = Path(folder or ".") / f"cartoongan-{style}.pth"
    if not folder or not path.is_file():
        pytest.skip(f"needs the official {style} weights: set CGLIB_WEIGHTS_DIR to a folder "
                    f"holding cartoongan-{style}.pth")
    return path
