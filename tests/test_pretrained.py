"""Official weights: loading, checks, download, and cartoonizing images of any size.

Tests marked by the official files skip without them; set CGLIB_WEIGHTS_DIR to a folder holding
cartoongan-<style>.pth and CGLIB_REFERENCE_DIR to the official outputs to run them.
"""

import hashlib
import io
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cglib import images, models, pretrained

# -- an independent forward pass, written from PAPER.md with torch.nn.functional only ----------


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


def random_official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=generator) * 0.05
            for key, shape in pretrained.official_shapes().items()}


def official_file(style: str) -> Path:
    folder = os.environ.get("CGLIB_WEIGHTS_DIR")
    path = Path(folder or ".") / f"cartoongan-{style}.pth"
    if not folder or not path.is_file():
        pytest.skip(f"needs the official {style} weights: set CGLIB_WEIGHTS_DIR to a folder "
                    f"holding cartoongan-{style}.pth")
    return path


@pytest.fixture
def random_official(tmp_path: Path) -> Path:
    path = tmp_path / "official.pth"
    torch.save(random_official_state(), path)
    return path


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv("CGLIB_WEIGHTS_DIR", str(folder))
    return folder


def rgb_batch(seed: int, height: int = 36, width: int = 52) -> torch.Tensor:
    return torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# -- the official format -----------------------------------------------------------------------


def test_official_shapes_are_papers_94_tensors():
    shapes = pretrained.official_shapes()
    assert len(shapes) == 94
    assert shapes["conv01_1.weight"] == (64, 3, 7, 7)
    assert shapes["conv02_1.weight"] == (128, 64, 3, 3)
    assert shapes["in11_2.shift"] == (256,)
    assert shapes["deconv01_1.weight"] == (256, 128, 3, 3)
    assert shapes["deconv02_1.weight"] == (128, 64, 3, 3)
    assert shapes["deconv03_1.weight"] == (3, 64, 7, 7)
    assert sum(int(np.prod(shape)) for shape in shapes.values()) == 11_129_667


def test_loader_equals_the_functional_official_forward(random_official: Path):
    generator = pretrained.load_official(random_official)
    state = torch.load(random_official, weights_only=True)
    assert not generator.training
    with torch.no_grad():
        x = rgb_batch(1)
        torch.testing.assert_close(generator(x), official_forward(state, x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("style", ["hayao", "hosoda"])
def test_released_weights_equal_the_functional_official_forward(style: str):
    path = official_file(style)
    state = torch.load(path, weights_only=True)
    assert set(state) == set(pretrained.official_shapes())
    generator = pretrained.load_official(path)
    with torch.no_grad():
        x = rgb_batch(2)
        torch.testing.assert_close(generator(x), official_forward(state, x), atol=1e-4, rtol=0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / error))


@pytest.mark.parametrize("style", ["hayao", "hosoda"])
@pytest.mark.parametrize("name", ["4--24", "7--88"])
def test_cartoonize_reproduces_the_official_outputs(style: str, name: str):
    """Fed as the official test code fed them: long side resized to 450 (PIL bicubic, the short
    side truncated to an integer). Its outputs are a few pixels larger (sides not multiples of
    4); their top-left part is the photo's. About 32 to 34.5 dB: the references are JPEGs."""
    weights = official_file(style)
    folder = os.environ.get("CGLIB_REFERENCE_DIR")
    if not folder or not (Path(folder) / f"{name}.jpg").is_file():
        pytest.skip("needs the official outputs: set CGLIB_REFERENCE_DIR to the folder holding "
                    f"{name}.jpg and {name}_{style.capitalize()}.jpg")
    photo = Image.open(Path(folder) / f"{name}.jpg").convert("RGB")
    width, height = photo.size
    if width > height:
        size = (450, int(450 * height / width))
    else:
        size = (int(450 * width / height), 450)
    photo = np.asarray(photo.resize(size, Image.BICUBIC))
    cartoon = pretrained.cartoonize(pretrained.load_official(weights), photo)
    reference = images.read_image(Path(folder) / f"{name}_{style.capitalize()}.jpg")
    measured = psnr(cartoon, reference[: photo.shape[0], : photo.shape[1]])
    print(f"{name} {style}: {measured:.2f} dB")
    assert measured >= 30


# -- broken files --------------------------------------------------------------------------------


def test_truncated_file_is_named_with_the_fix(random_official: Path, tmp_path: Path):
    broken = tmp_path / "truncated.pth"
    broken.write_bytes(random_official.read_bytes()[: 1 << 20])
    with pytest.raises(ValueError, match=r"truncated\.pth is not a torch file.*download"):
        pretrained.load_official(broken)
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="notes.pth is not a torch file"):
        pretrained.load_official(text)


def test_missing_key_and_wrong_shape_are_named(tmp_path: Path):
    state = random_official_state()
    del state["in07_2.scale"]
    state["conv02_2.weight"] = torch.zeros(128, 128, 5, 5)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as caught:
        pretrained.load_official(path)
    message = str(caught.value)
    assert "edited.pth" in message and "missing key in07_2.scale" in message
    assert "conv02_2.weight has shape (128, 128, 5, 5), expected (128, 128, 3, 3)" in message
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="holds a Tensor, not a generator state dict"):
        pretrained.load_official(path)


def test_unknown_style_or_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="hayao, hosoda, paprika, shinkai"):
        pretrained.load_official(tmp_path / "nothing.pth")
    with pytest.raises(ValueError, match="not a released style"):
        pretrained.weights_available("ghibli")


# -- cglib's own generator files -----------------------------------------------------------------


def test_save_generator_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    generator = models.Generator(width=8, residual_blocks=2, epsilon=1e-6)
    path = pretrained.save_generator(generator, tmp_path / "runs" / "generator.pt")
    stored = torch.load(path, weights_only=True)
    assert stored["format"] == "cglib-generator"
    assert stored["config"] == {"width": 8, "residual_blocks": 2, "norm": "instance",
                                "epsilon": 1e-6}
    assert [p.name for p in path.parent.iterdir()] == ["generator.pt"]  # no temporary left
    loaded = pretrained.load_official(path)
    x = rgb_batch(3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), generator.eval()(x), atol=0, rtol=0)
    stored["state_dict"].pop("flat.conv.bias")
    torch.save(stored, path)
    with pytest.raises(ValueError, match="damaged cglib-generator file"):
        pretrained.load_official(path)


# -- finding and downloading ------------------------------------------------------------------


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def serve(monkeypatch: pytest.MonkeyPatch, data: bytes) -> list[str]:
    asked: list[str] = []

    def fake_urlopen(url, timeout=None):
        asked.append(url)
        return FakeResponse(data)

    monkeypatch.setattr(pretrained, "urlopen", fake_urlopen)
    return asked


def test_download_keeps_a_file_whose_sha256_matches(weights_dir, monkeypatch):
    data = os.urandom(3000)
    monkeypatch.setitem(pretrained.SHA256, "paprika", hashlib.sha256(data).hexdigest())
    asked = serve(monkeypatch, data)
    assert not pretrained.weights_available("paprika")
    path = pretrained.download_official("paprika")
    assert asked == [pretrained.MIRROR_URL.format(style="paprika")]
    assert path == weights_dir / "cartoongan-paprika.pth" and path.read_bytes() == data
    assert pretrained.weights_available("paprika")
    assert [p.name for p in weights_dir.iterdir()] == ["cartoongan-paprika.pth"]
    pretrained.download_official("paprika")
    assert len(asked) == 1  # present: not downloaded again


def test_download_with_a_wrong_sha256_is_deleted(weights_dir, monkeypatch):
    serve(monkeypatch, b"something else entirely")
    with pytest.raises(ValueError, match="SHA-256 .* expected c3547f61.*deleted"):
        pretrained.download_official("shinkai")
    assert list(weights_dir.iterdir()) == []


def test_offline_error_names_the_url_and_the_folder(weights_dir, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(pretrained, "urlopen", offline)
    with pytest.raises(RuntimeError) as caught:
        pretrained.load_official("Hosoda")
    message = str(caught.value)
    assert pretrained.MIRROR_URL.format(style="hosoda") in message
    assert str(weights_dir) in message and "CGLIB_WEIGHTS_DIR" in message
    assert not weights_dir.exists() or not any(weights_dir.iterdir())


def test_download_that_breaks_off_leaves_nothing(weights_dir, monkeypatch):
    class BrokenResponse(FakeResponse):
        def read(self, size=-1):
            if self.tell():
                raise ConnectionResetError("connection reset by peer")
            return super().read(100)

    monkeypatch.setattr(pretrained, "urlopen", lambda url, timeout=None: BrokenResponse(b"x" * 500))
    with pytest.raises(RuntimeError, match="broke off .*connection reset"):
        pretrained.download_official("paprika")
    assert list(weights_dir.iterdir()) == []


def test_load_official_by_style_downloads_then_loads(weights_dir, monkeypatch, random_official):
    data = random_official.read_bytes()
    monkeypatch.setitem(pretrained.SHA256, "hayao", hashlib.sha256(data).hexdigest())
    serve(monkeypatch, data)
    generator = pretrained.load_official("hayao")
    x = rgb_batch(4)
    with torch.no_grad():
        expected = official_forward(random_official_state(), x)
        torch.testing.assert_close(generator(x), expected, atol=1e-4, rtol=0)
    cartoons = pretrained.render_cartoons([np.zeros((20, 30, 3), np.uint8)] * 2, "hayao", "cpu")
    assert [cartoon.shape for cartoon in cartoons] == [(20, 30, 3)] * 2


# -- cartoonize --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_generator() -> models.Generator:
    torch.manual_seed(0)
    return models.Generator(width=8, residual_blocks=2).eval()


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_any_size_is_padded_by_reflection_and_cropped_back(small_generator):
    image = photo(37, 53)
    cartoon = pretrained.cartoonize(small_generator, image)
    assert cartoon.shape == image.shape and cartoon.dtype == np.uint8
    padded = np.pad(image, ((0, 3), (0, 3), (0, 0)), mode="reflect")
    x = torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = small_generator(x)[0].permute(1, 2, 0).numpy()
    expected = np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)[:37, :53]
    assert np.abs(cartoon.astype(int) - expected).max() <= 1
    for height, width in ((1, 1), (5, 7), (8, 3)):
        assert pretrained.cartoonize(small_generator, photo(height, width)).shape == (
            height, width, 3)


def test_list_in_list_out(small_generator):
    batch = [photo(24, 32, 1), photo(40, 20, 2), photo(24, 32, 3)]
    cartoons = pretrained.cartoonize(small_generator, batch, batch_size=2)
    assert [c.shape for c in cartoons] == [b.shape for b in batch]
    alone = pretrained.cartoonize(small_generator, batch[2])
    assert np.abs(cartoons[2].astype(int) - alone).max() <= 1


def test_tiled_equals_untiled_within_a_small_tolerance(small_generator):
    """On a statistically uniform image every tile's instance-norm statistics are close to
    the whole image's; what remains is the blending, which a misplaced tile would ruin."""
    image = photo(200, 280, 5)
    whole = pretrained.cartoonize(small_generator, image, tile=512)
    tiled = pretrained.cartoonize(small_generator, image, tile=128, overlap=32)
    difference = np.abs(whole.astype(int) - tiled)
    assert difference.mean() < 3 and psnr(whole, tiled) > 35  # measured: 2.3 and 38.4 dB
    shifted = pretrained.cartoonize(small_generator, np.roll(image, 4, axis=1), tile=512)
    assert psnr(whole, shifted) < 20  # the outputs are position-specific: the check has teeth


def test_tile_starts_cover_with_the_overlap():
    for length, tile, overlap in ((512, 256, 32), (3000, 1024, 128), (4000, 2048, 256)):
        starts = pretrained._tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] == length - tile
        assert all(start % 4 == 0 for start in starts)
        assert all(tile - overlap >= b - a > 0 for a, b in zip(starts, starts[1:], strict=False))
    assert pretrained._tile_starts(500, 512, 64) == [0]


def test_precision_and_mode(small_generator):
    image = photo(32, 48)
    fp32 = pretrained.cartoonize(small_generator, image)
    bf16 = pretrained.cartoonize(small_generator, image, precision="bf16")
    assert np.abs(fp32.astype(int) - bf16).mean() < 4
    small_generator.train()
    pretrained.cartoonize(small_generator, image)
    assert small_generator.training
    small_generator.eval()
    with pytest.raises(ValueError, match="precision='fp8'"):
        pretrained.cartoonize(small_generator, image, precision="fp8")


def test_bad_inputs_are_named(small_generator):
    with pytest.raises(ValueError, match="image 1 is a float32 array"):
        pretrained.cartoonize(small_generator, [photo(8, 8), np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="multiples of 4"):
        pretrained.cartoonize(small_generator, photo(8, 8), tile=100, overlap=10)


def test_command_line_cartoonizes_a_folder_and_skips_bad_files(random_official, tmp_path, capsys):
    from cglib.__main__ import main

    folder = tmp_path / "photos"
    images.write_image(folder / "trip" / "beach.png", photo(30, 44))
    (folder / "broken.jpg").write_text("not a picture")
    out = tmp_path / "out"
    assert main(["cartoonize", str(folder), str(tmp_path / "absent.jpg"), "--style",
                 str(random_official), "--out", str(out), "--device", "cpu"]) == 0
    written = images.read_image(out / "trip" / "beach_official.png")
    assert written.shape == (30, 44, 3)
    captured = capsys.readouterr()
    assert "broken.jpg: not an image" in captured.err and "absent.jpg" in captured.err
    assert "wrote 1 image to" in captured.out
