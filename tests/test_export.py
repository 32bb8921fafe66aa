"""ONNX export: the graph equals the torch generator (cropped) at any size and batch, the file
declares its contract, and the command writes, checks and refuses as it says."""

import functools
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cglib import authors, export, metrics, models, pretrained
from cglib.__main__ import main

onnx = pytest.importorskip("onnx", reason='needs the export extra: pip install "cglib[export]"')
onnxruntime = pytest.importorskip("onnxruntime", reason="needs the export extra")

ODD_SIZES = ((37, 53), (8, 8), (64, 90))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[models.Generator, Path]:
    torch.manual_seed(0)
    generator = models.Generator(width=8, residual_blocks=2).eval()
    path = export.export_onnx(generator, tmp_path_factory.mktemp("small") / "small.onnx")
    return generator, path


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> tuple[models.Generator, Path]:
    """The released architecture with random weights in the official format, exported once."""
    folder = tmp_path_factory.mktemp("official")
    torch.save(authors.random_state(), folder / "official.pth")
    generator = pretrained.load_official(folder / "official.pth")
    return generator, export.export_onnx(generator, folder / "official.onnx")


def run_onnx(path: Path, image: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["cartoon"], {"image": image.numpy()})[0]


def random_images(count: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, height, width, generator=rng) * 2 - 1


def test_small_generator_matches_torch_at_odd_sizes(small):
    generator, path = small
    results = export.check_onnx(path, generator, sizes=ODD_SIZES)
    assert [(row["height"], row["width"]) for row in results] == list(ODD_SIZES)
    assert all(row["psnr"] >= 50 and row["max_abs_diff"] < 1e-4 for row in results), results
    image = random_images(1, 37, 53)
    cartoon = run_onnx(path, image)
    assert cartoon.shape == (1, 3, 37, 53) and cartoon.dtype == np.float32
    with torch.no_grad():
        full = generator(image).numpy()  # 40 x 56: the graph keeps its top-left 37 x 53
    assert metrics.psnr(cartoon, full[:, :, :37, :53]) >= 50
    assert metrics.psnr(cartoon, full[:, :, 3:, 3:]) < 30  # cropped bottom-right: 14.4 dB


def test_official_format_generator_matches_an_independent_forward(official):
    generator, path = official
    results = export.check_onnx(path, generator, sizes=((37, 53), (64, 64)))
    assert all(row["psnr"] >= 50 for row in results), results
    image = random_images(1, 37, 53, seed=2)
    cartoon = run_onnx(path, image)
    state = authors.random_state()
    padded = torch.nn.functional.pad(image, (0, 3, 0, 3), mode="reflect")
    with torch.no_grad():
        reference = authors.forward(state, image).numpy()
        shifted = authors.forward(state, padded[:, :, 1:, 1:]).numpy()
    assert reference.shape == (1, 3, 40, 56)
    assert metrics.psnr(cartoon, reference[:, :, :37, :53]) >= 50
    assert metrics.psnr(cartoon, shifted[:, :, :37, :53]) < 35  # one pixel off: 28.9 dB


def test_batch_is_dynamic(small):
    generator, path = small
    images = random_images(2, 37, 53, seed=3)
    cartoons = run_onnx(path, images)
    assert cartoons.shape == (2, 3, 37, 53)
    with torch.no_grad():
        expected = export.CroppedGenerator(generator)(images).numpy()
    assert metrics.psnr(cartoons, expected) >= 50
    assert np.abs(cartoons[1:] - run_onnx(path, images[1:])).max() < 1e-5


def test_file_declares_its_names_shapes_and_contract(small):
    proto = onnx.load(str(small[1]))
    onnx.checker.check_model(proto)
    assert proto.doc_string == export.GRAPH_CONTRACT
    for value, name in ((proto.graph.input[0], "image"), (proto.graph.output[0], "cartoon")):
        assert value.name == name
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", 3, "height", "width"]


def test_exporter_follows_torch_default():
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    assert export.uses_torch_export() == ((major, minor) >= (2, 9))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch >= 2.9 deprecates it
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")
def test_torchscript_exporter_for_older_torch(tmp_path, monkeypatch, small):
    """The path torch < 2.9 takes, forced here; its opset 17 is below what torch.export's takes."""
    monkeypatch.setattr(export, "uses_torch_export", lambda: False)
    generator = small[0]
    path = export.export_onnx(generator, tmp_path / "legacy.onnx", opset=17)
    assert onnx.load(str(path)).opset_import[0].version == 17
    results = export.check_onnx(path, generator, sizes=((37, 53), (64, 90)))
    assert all(row["psnr"] >= 50 for row in results), results
    assert run_onnx(path, random_images(2, 37, 53)).shape == (2, 3, 37, 53)


@pytest.mark.skipif(not export.uses_torch_export(), reason="torch.export-based exporter only")
def test_opset_below_18_is_refused_with_the_fix(small, tmp_path):
    with pytest.raises(ValueError, match="opset=17.* writes opsets 18 to"):
        export.export_onnx(small[0], tmp_path / "old.onnx", opset=17)
    assert not (tmp_path / "old.onnx").exists()


def test_targets_are_checked_before_any_work(tmp_path, small):
    existing = tmp_path / "there.onnx"
    existing.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="there.onnx exists already.*overwrite=True"):
        export.export_onnx(small[0], existing)
    assert existing.read_bytes() == b"old"
    assert export.check_target(existing, overwrite=True) == existing
    with pytest.raises(IsADirectoryError, match="is a folder"):
        export.check_target(tmp_path)
    with pytest.raises(NotADirectoryError, match="there.onnx is a file"):
        export.check_target(existing / "inner" / "g.onnx")
    assert export.check_target(tmp_path / "new" / "g.onnx").parent.is_dir()


def test_psnr_of_one_grey_level_is_48_db():
    a = np.zeros((3, 4, 4), np.float32)
    assert metrics.psnr(a, a + 1 / 127.5) == pytest.approx(48.13, abs=0.01)
    assert metrics.psnr(a, a) == float("inf")
    with pytest.raises(ValueError, match="two uint8 images or two float arrays in"):
        metrics.psnr(a.astype(np.uint8), a)


def test_export_checked_puts_only_a_checked_file_in_place(tmp_path, small):
    path = tmp_path / "g.onnx"
    results = export.export_checked(small[0], path, sizes=((37, 53),))
    assert [(row["height"], row["width"]) for row in results] == [(37, 53)]
    assert results[0]["psnr"] >= export.MIN_PSNR
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]  # no temporary left
    assert export.check_onnx(path, small[0], sizes=((37, 53),)) == results


def test_a_failed_check_keeps_the_old_file_and_removes_the_new_one(tmp_path, monkeypatch, small):
    path = tmp_path / "g.onnx"
    path.write_bytes(b"the good one")
    checked = []
    bad = [{"height": 37, "width": 53, "psnr": 21.5, "max_abs_diff": 0.3}]

    def check(temporary, generator, sizes, name):
        checked.append(temporary)
        assert temporary.parent == tmp_path and temporary.read_bytes().startswith(b"\x08")
        return bad

    monkeypatch.setattr(export, "check_onnx", check)
    with pytest.raises(export.ExportCheckError, match=r"37x53 \(21.5 dB, under 50\), so .*g.onnx "
                                                      r"was not written") as error:
        export.export_checked(small[0], path, overwrite=True)
    assert error.value.results == bad and len(checked) == 1
    assert path.read_bytes() == b"the good one"
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]


def test_export_checked_without_onnxruntime_fails_before_any_work(tmp_path, monkeypatch, small):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(export, "export_onnx", lambda *args, **options: pytest.fail("exported"))
    with pytest.raises(ImportError, match=re.escape('pip install "cglib[export]"')):
        export.export_checked(small[0], tmp_path / "g.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_names_the_extra(small, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=re.escape('pip install "cglib[export]"')):
        export.check_onnx(small[1], small[0])


# -- the command line ----------------------------------------------------------------------------


def test_command_exports_checks_and_prints_one_line_per_size(tmp_path, monkeypatch, capsys):
    weights = tmp_path / "official.pth"
    torch.save(authors.random_state(seed=4), weights)
    sizes = ((37, 53), (64, 64), (45, 30))  # the default sizes take half a minute on a laptop
    monkeypatch.setattr(export, "export_checked",
                        functools.partial(export.export_checked, sizes=sizes))
    out = tmp_path / "models" / "official.onnx"
    assert main(["export", "--style", str(weights), "--onnx", str(out), "--opset", "18"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["37x53", "64x64", "45x30"]
    for line in lines:
        match = re.fullmatch(r"\d+x\d+: ([\d.]+|inf) dB, max \|diff\| \d\.\de[+-]\d\d", line)
        assert match and float(match.group(1)) >= 50, line
    assert onnx.load(str(out)).opset_import[0].version == 18
    assert [p.name for p in out.parent.iterdir()] == ["official.onnx"]  # no temporary left

    assert main(["export", "--style", str(weights), "--onnx", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "exists already" in error and "--overwrite" in error


def test_command_refuses_an_opset_torch_cannot_write_before_any_work(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setattr(pretrained, "load", lambda *args: pytest.fail("loaded a generator"))
    supported = export.supported_opsets()
    assert supported.stop - 1 >= 18 and 99 not in supported
    assert main(["export", "--style", "hayao", "--onnx", str(tmp_path / "g.onnx"),
                 "--opset", "99"]) == 2
    assert capsys.readouterr().err == (
        f"error: opset=99: the ONNX exporter of torch {torch.__version__} writes opsets "
        f"{supported.start} to {supported.stop - 1}; ask for one of them (--opset), or leave "
        "it out for torch's default\n")
    assert list(tmp_path.iterdir()) == []


def test_command_names_the_file_asked_for_when_it_cannot_be_written(tmp_path, capsys, small):
    """A name the file system takes (255 bytes) whose hidden temporary it does not."""
    weights = pretrained.save_generator(small[0], tmp_path / "small.pt")
    out = tmp_path / ("g" * 250 + ".onnx")
    assert main(["export", "--style", str(weights), "--onnx", str(out)]) == 2
    error = capsys.readouterr().err
    assert error == f"error: the name is too long; choose a shorter path ({out})\n"
    assert [p.name for p in tmp_path.iterdir()] == ["small.pt"]


def test_command_fails_in_one_line_when_the_folder_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file")
    assert main(["export", "--style", "hayao", "--onnx", str(blocker / "g.onnx")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"{blocker} is a file" in error


def test_command_fails_under_50_db(tmp_path, monkeypatch, capsys, small):
    weights = pretrained.save_generator(small[0], tmp_path / "small.pt")
    bad = [{"height": 37, "width": 53, "psnr": 21.5, "max_abs_diff": 0.3}]
    monkeypatch.setattr(export, "export_onnx", lambda generator, path, **options: Path(path))
    monkeypatch.setattr(export, "check_onnx", lambda path, generator, sizes, name: bad)
    assert main(["export", "--style", str(weights), "--onnx", str(tmp_path / "g.onnx")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "37x53: 21.5 dB, max |diff| 3.0e-01\n"
    assert "\n" not in captured.err.strip() and "37x53 (21.5 dB, under 50)" in captured.err
    assert [p.name for p in tmp_path.iterdir()] == ["small.pt"]  # no ONNX file, no temporary


def test_command_without_the_extra_says_what_to_install(tmp_path, monkeypatch, capsys, small):
    weights = pretrained.save_generator(small[0], tmp_path / "small.pt")
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "--style", str(weights), "--onnx", str(tmp_path / "g.onnx")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and 'pip install "cglib[export]"' in error
    assert not (tmp_path / "g.onnx").exists()
