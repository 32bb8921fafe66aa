"""The independent reference of the authors' generator: its format agrees with cglib's
reading of the official files, it needs nothing of cglib, and its parts are right on their own."""

import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

from cglib import authors, pretrained


def test_official_shapes_agree_with_cglibs_mapping_of_the_official_file():
    shapes = authors.official_shapes()
    assert shapes == pretrained.official_shapes()
    assert list(shapes) == list(pretrained.official_shapes())  # the file's order
    assert len(shapes) == 94 and sum(int(np.prod(s)) for s in shapes.values()) == 11_129_667
    narrow = authors.official_shapes(width=8)
    assert narrow["conv01_1.weight"] == (8, 3, 7, 7) and narrow["in11_2.scale"] == (32,)
    assert narrow["deconv02_1.weight"] == (16, 8, 3, 3) and narrow["deconv03_1.bias"] == (3,)


def test_random_state_is_seeded():
    first, again, other = (authors.random_state(seed, width=8) for seed in (1, 1, 2))
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["conv01_1.weight"], other["conv01_1.weight"])


def test_instance_norm_equals_torchs_affine_instance_norm():
    x = torch.randn(2, 5, 7, 9, generator=torch.Generator().manual_seed(0)) * 3 + 1
    scale, shift = torch.rand(5) + 0.5, torch.randn(5)
    expected = F.instance_norm(x, weight=scale, bias=shift, eps=1e-5)
    torch.testing.assert_close(authors.instance_norm(x, scale, shift, 1e-5), expected)


def test_forward_keeps_the_batch_and_rounds_sides_up_to_multiples_of_4():
    state = authors.random_state(seed=3, width=8)
    x = torch.rand(2, 3, 37, 53) * 2 - 1
    y = authors.forward(state, x)
    assert y.shape == (2, 3, 40, 56) and y.abs().max() <= 1
    torch.testing.assert_close(authors.forward(state, x[1:]), y[1:], atol=1e-6, rtol=0)
    # RGB in and out: the network itself reads and writes BGR
    torch.testing.assert_close(y, authors.network(state, x.flip(1)).flip(1))


def test_imports_nothing_of_cglib():
    code = ("import sys, cglib.authors; "
            "print(sorted(m for m in sys.modules if m.startswith('cglib.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["['cglib.authors']"]
