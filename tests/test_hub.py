"""hubconf.py: torch.hub's entry points give what cglib's own functions give, by file and by
style name, without a network."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from cglib import authors, download, env, inference, pretrained

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hub") / "official.pth"
    torch.save(authors.random_state(seed=5), path)
    return path


@pytest.fixture(scope="module")
def expected(official_file: Path) -> torch.nn.Module:
    """What cglib itself loads from the same file."""
    return pretrained.load_official(official_file)


def photo(height: int = 21, width: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def hub_load(entry: str, **options):
    return torch.hub.load(str(ROOT), entry, source="local", **options)


def test_entry_points_are_generator_and_cartoonize():
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    # torch.hub.list's rule: every public callable of hubconf is an entry point
    entries = [name for name in dir(hubconf)
               if callable(getattr(hubconf, name)) and not name.startswith("_")]
    assert entries == ["cartoonize", "generator"]
    assert all(importlib.util.find_spec(name) for name in hubconf.dependencies)
    usage = f'torch.hub.load("{env.REPOSITORY}", "generator", style="hayao")'
    assert usage in hubconf.__doc__ and usage in hubconf.generator.__doc__


def test_generator_from_a_file_equals_load_official(official_file, expected):
    generator = hub_load("generator", style=str(official_file))
    assert not generator.training
    x = torch.rand(2, 3, 36, 52, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(generator(x), expected(x), atol=0, rtol=0)


def test_cartoonize_equals_inference_cartoonize(official_file, expected):
    cartoonize = hub_load("cartoonize", style=str(official_file), precision="bf16")
    image = photo()
    cartoon = cartoonize(image)
    assert cartoon.shape == image.shape and cartoon.dtype == np.uint8
    np.testing.assert_array_equal(cartoon, inference.cartoonize(expected, image,
                                                                precision="bf16"))
    fp32 = inference.cartoonize(expected, image, precision="fp32")
    assert not np.array_equal(cartoon, fp32)  # the option was used
    pair = cartoonize([image, photo(20, 24, seed=1)])
    assert [c.shape for c in pair] == [(21, 30, 3), (20, 24, 3)]
    np.testing.assert_array_equal(pair[0], cartoon)


def test_a_wrong_option_fails_at_load_time(official_file):
    with pytest.raises(TypeError, match="tiles"):
        hub_load("cartoonize", style=str(official_file), tiles=512)


def test_by_style_name_from_the_weights_folder(official_file, expected, tmp_path, monkeypatch):
    """A local file is checked for its structure, not its hash: nothing is downloaded."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "cartoongan-hayao.pth").write_bytes(official_file.read_bytes())
    monkeypatch.setenv("CGLIB_WEIGHTS_DIR", str(folder))

    def offline(url, timeout=None):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(download, "urlopen", offline)
    generator = hub_load("generator", style="hayao")
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(generator(x), expected(x), atol=0, rtol=0)
    cartoonize = hub_load("cartoonize", style="Hayao")
    np.testing.assert_array_equal(cartoonize(photo()), inference.cartoonize(expected, photo()))
