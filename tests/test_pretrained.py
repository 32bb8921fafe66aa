"""Official weights: loading, checks, download, and cartoonizing images of any size.

Tests marked by the official files skip without them; set CGLIB_WEIGHTS_DIR to a folder holding
cartoongan-<style>.pth and CGLIB_REFERENCE_DIR to the official outputs to run them.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cglib import authors, models, pretrained


@pytest.fixture
def random_official(tmp_path: Path) -> Path:
    path = tmp_path / "official.pth"
    torch.save(authors.random_state(), path)
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
        torch.testing.assert_close(generator(x), authors.forward(state, x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("style", ["hayao", "hosoda"])
def test_released_weights_equal_the_functional_official_forward(style: str, released_weights):
    path = released_weights(style)
    state = torch.load(path, weights_only=True)
    assert set(state) == set(pretrained.official_shapes())
    generator = pretrained.load_official(path)
    with torch.no_grad():
        x = rgb_batch(2)
        torch.testing.assert_close(generator(x), authors.forward(state, x), atol=1e-4, rtol=0)


# -- broken files --------------------------------------------------------------------------------


def test_truncated_file_is_named_with_the_fix(random_official: Path, tmp_path: Path):
    truncated, garbage = tmp_path / "truncated.pth", tmp_path / "notes.pth"
    truncated.write_bytes(random_official.read_bytes()[: 1 << 20])
    garbage.write_bytes(b"not weights")
    for path in (truncated, garbage):
        with pytest.raises(ValueError) as caught:
            pretrained.load_official(path)
        message = str(caught.value)
        assert f"{path.name} is not a torch weight file" in message and "download" in message
        assert "weights_only" not in message  # never advise the unsafe way of loading


def test_missing_key_and_wrong_shape_are_named(tmp_path: Path):
    state = authors.random_state()
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
    with pytest.raises(ValueError, match="holds a Tensor, not a generator's weights"):
        pretrained.load_official(path)


def test_unknown_style_or_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist; give a style .hayao, hosoda"):
        pretrained.load_official(tmp_path / "nothing.pth")
    (tmp_path / "loop.pth").symlink_to(tmp_path / "loop.pth")
    with pytest.raises(FileNotFoundError, match="loop.pth is a symbolic link loop"):
        pretrained.load(tmp_path / "loop.pth")
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
    x = rgb_batch(3)
    for loaded in (pretrained.load_generator(path), pretrained.load(path)):
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), generator.eval()(x), atol=0, rtol=0)
    with pytest.raises(ValueError, match="trained with cglib.*load_generator"):
        pretrained.load_official(path)
    stored["state_dict"].pop("flat.conv.bias")
    torch.save(stored, path)
    with pytest.raises(ValueError, match="damaged cglib-generator file"):
        pretrained.load_generator(path)


def test_load_generator_points_official_files_to_load_official(random_official: Path):
    with pytest.raises(ValueError, match="not a generator saved by cglib.*load_official"):
        pretrained.load_generator(random_official)
    assert pretrained.load(random_official).config["width"] == 64


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_a_plain_state_dict_of_cglibs_generator_loads(tmp_path: Path, norm: str):
    """torch.save(G.state_dict()) of a cglib generator: its settings are read off its tensors."""
    torch.manual_seed(1)
    generator = models.Generator(width=8, residual_blocks=3, norm=norm).eval()
    path = tmp_path / "mine.pt"
    torch.save(generator.state_dict(), path)
    x = rgb_batch(4)
    for loaded in (pretrained.load_generator(path), pretrained.load(path)):
        assert loaded.config == generator.config
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), generator(x), atol=0, rtol=0)
    with pytest.raises(ValueError, match="mine.pt is a generator trained with cglib.*"
                                         "load_generator"):
        pretrained.load_official(path)


def test_only_a_released_file_is_told_to_be_downloaded_again(tmp_path: Path):
    state = authors.random_state()
    del state["in07_2.scale"]
    released, mine = tmp_path / "cartoongan-hayao.pth", tmp_path / "mine.pth"
    for path in (released, mine):
        torch.save(state, path)
    with pytest.raises(ValueError, match="Fix: download it again"):
        pretrained.load(released)
    with pytest.raises(ValueError) as caught:
        pretrained.load(mine)
    message = str(caught.value)
    assert "missing key in07_2.scale" in message and "delete" not in message
    assert "download" not in message and "torch.save(generator.state_dict())" in message


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("residual_blocks", 10**7, "its config's residual_blocks=10000000 is not its tensors' 2"),
    ("width", 10**6, "its config's width=1000000 is not its tensors' 8"),
    ("width", 8.0, "its config's width=8.0 is not its tensors' 8"),
    ("norm", "layer", "its config's norm='layer' is not one of instance, batch"),
    ("epsilon", 1e9, "its config's epsilon=1000000000.0 is not a number between 0 and 1"),
    ("depth", 3, "its config has the unknown field depth"),
])
def test_a_crafted_config_is_refused_before_anything_is_built(tmp_path, field, value, problem):
    """The saved settings must be those of the tensors in the file: a config asking for ten
    million residual blocks is refused at once, naming the file and the field."""
    path = pretrained.save_generator(models.Generator(width=8, residual_blocks=2),
                                     tmp_path / "crafted.pt")
    stored = torch.load(path, weights_only=True)
    stored["config"][field] = value
    torch.save(stored, path)
    for load in (pretrained.load, pretrained.load_generator):
        with pytest.raises(ValueError) as caught:
            load(path)
        assert str(caught.value) == (f"{path} is a damaged cglib-generator file ({problem}); "
                                     "save the generator again with "
                                     "cglib.pretrained.save_generator")


def test_a_tensor_of_another_shape_is_named(tmp_path):
    path = pretrained.save_generator(models.Generator(width=8, residual_blocks=2),
                                     tmp_path / "g.pt")
    stored = torch.load(path, weights_only=True)
    stored["state_dict"]["residual_blocks.1.body.conv1.weight"] = torch.zeros(1)
    torch.save(stored, path)
    with pytest.raises(ValueError, match=r"its tensor residual_blocks\.1\.body\.conv1\.weight "
                                         r"is \(1,\), expected \(32, 32, 3, 3\)"):
        pretrained.load(path)


# -- finding and downloading ------------------------------------------------------------------


def mirror(monkeypatch: pytest.MonkeyPatch, server, style: str, data: bytes) -> str:
    """Serve ``data`` as ``style``'s file from a local HTTP server standing in for the mirror,
    with its SHA-256 as the expected one; returns the URL path."""
    monkeypatch.setattr(pretrained, "MIRROR_URL", server.url("/cartoongan-{style}.pth"))
    monkeypatch.setitem(pretrained.SHA256, style, hashlib.sha256(data).hexdigest())
    server.files[f"/cartoongan-{style}.pth"] = data
    return f"/cartoongan-{style}.pth"


def test_download_keeps_a_file_whose_sha256_matches(weights_dir, monkeypatch, file_server):
    data = os.urandom(3000)
    served = mirror(monkeypatch, file_server, "paprika", data)
    assert not pretrained.weights_available("paprika")
    path = pretrained.download_official("paprika")
    assert [request[0] for request in file_server.requests] == [served]
    assert path == weights_dir / "cartoongan-paprika.pth" and path.read_bytes() == data
    assert pretrained.weights_available("paprika")
    assert [p.name for p in weights_dir.iterdir()] == ["cartoongan-paprika.pth"]
    pretrained.download_official("paprika")
    assert len(file_server.requests) == 1  # present: not downloaded again


def test_download_with_a_wrong_sha256_is_deleted(weights_dir, monkeypatch, file_server):
    mirror(monkeypatch, file_server, "shinkai", b"something else entirely")
    monkeypatch.setitem(pretrained.SHA256, "shinkai", "c3547f61" + "0" * 56)
    with pytest.raises(ValueError, match="SHA-256.*c3547f61"):
        pretrained.download_official("shinkai")
    assert list(weights_dir.iterdir()) == []


def test_offline_error_names_the_url_and_the_folder(weights_dir, monkeypatch, file_server):
    url = file_server.url("/cartoongan-{style}.pth")
    file_server.close()  # nothing answers there any more
    monkeypatch.setattr(pretrained, "MIRROR_URL", url)
    with pytest.raises(RuntimeError) as caught:
        pretrained.load_official("Hosoda")
    message = str(caught.value)
    assert url.format(style="hosoda") in message
    assert str(weights_dir) in message and "CGLIB_WEIGHTS_DIR" in message
    assert not any(p.name == "cartoongan-hosoda.pth" for p in weights_dir.glob("*"))


def test_download_that_breaks_off_resumes(weights_dir, monkeypatch, file_server):
    data = os.urandom(5000)
    mirror(monkeypatch, file_server, "paprika", data)
    file_server.break_after = 1000
    with pytest.raises(RuntimeError, match="run .*again"):
        pretrained.download_official("paprika")
    assert not (weights_dir / "cartoongan-paprika.pth").exists()
    assert pretrained.download_official("paprika").read_bytes() == data
    assert file_server.requests[-1][1] == "bytes=1000-"  # the rest only


def test_load_official_by_style_downloads_then_loads(weights_dir, monkeypatch, random_official,
                                                   file_server):
    mirror(monkeypatch, file_server, "hayao", random_official.read_bytes())
    generator = pretrained.load_official("hayao")
    x = rgb_batch(4)
    with torch.no_grad():
        expected = authors.forward(authors.random_state(), x)
        torch.testing.assert_close(generator(x), expected, atol=1e-4, rtol=0)
    cartoons = pretrained.render_cartoons([np.zeros((20, 30, 3), np.uint8)] * 2, "hayao", "cpu")
    assert [cartoon.shape for cartoon in cartoons] == [(20, 30, 3)] * 2


def test_load_available_takes_what_can_be_had_and_says_why_not_the_rest(
        weights_dir, monkeypatch, random_official, file_server, capsys):
    weights_dir.mkdir()
    (weights_dir / "cartoongan-hayao.pth").write_bytes(random_official.read_bytes())
    (weights_dir / "cartoongan-hosoda.pth").write_bytes(b"not a torch file")
    mirror(monkeypatch, file_server, "paprika", random_official.read_bytes())
    offline = pretrained.load_available(download=False)
    assert list(offline) == ["hayao"] and not file_server.requests
    printed = capsys.readouterr().out
    assert "hosoda: skipped" in printed and "cartoongan-hosoda.pth is not a torch" in printed
    assert "shinkai: skipped, " in printed and "absent" in printed
    online = pretrained.load_available(["hayao", "paprika"])
    assert list(online) == ["hayao", "paprika"]
    assert [request[0] for request in file_server.requests] == ["/cartoongan-paprika.pth"]
