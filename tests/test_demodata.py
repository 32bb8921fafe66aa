"""cglib.demodata: the offline, deterministic demo data set and its pluggable cartoon source."""

import json
import os

import cv2
import numpy as np
import pytest

from cglib import demodata, pretrained
from cglib.images import list_images, read_image


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CGLIB_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def files_of(root):
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_sources_are_photo_files_shipped_with_packages_in_disjoint_splits():
    names = []
    for split, files in demodata.SOURCES.items():
        for package, name in files:
            path = demodata.source_path(package, name)
            assert path.is_file(), f"{path} is not shipped with {package}"
            image = read_image(path)
            assert image.shape[2] == 3 and min(image.shape[:2]) >= 256
            if split == "cartoons":
                assert (image[..., 0] != image[..., 1]).mean() > 0.2  # colour, not gray
            names.append(name)
    assert len(names) == len(set(names))  # no photograph in two splits
    photos = [name for _, name in demodata.SOURCES["photos"]]
    assert "data/motorcycle_left.png" in photos and "data/motorcycle_right.png" in photos
    assert len(demodata.SOURCES["photos_test"]) == 4


def test_smoke_set_is_built_reused_and_byte_identical(data_dir, monkeypatch, capsys):
    root = demodata.ensure_demo_dataset("smoke", source="filter")
    assert root == data_dir / "demo-smoke"
    assert [path.name for path in data_dir.iterdir()] == ["demo-smoke"]  # no build leftovers
    counts = {"photos": 8, "photos_test": 4, "cartoons": 8, "cartoons_smoothed": 8}
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts"] == counts
    assert manifest["recipe"]["cartoon_source"] == "filter"
    assert "cartoons from filter" in capsys.readouterr().out
    for domain in counts:
        for path in list_images(root / domain):
            assert read_image(path).shape == (64, 64, 3)
    assert demodata.composition(root) == {"chelsea.png": 1, "coffee.png": 1, "camera.png": 1,
                                          "coins.png": 1}
    assert demodata.composition(root, "photos", first=5) == dict.fromkeys(
        ["astronaut.png", "motorcycle_left.png", "motorcycle_right.png", "moon.png",
         "brick.png"], 1)
    first = files_of(root)
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*")}
    assert demodata.ensure_demo_dataset("smoke", source="filter") == root
    assert "reusing it" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*")} == stamps

    monkeypatch.setenv("CGLIB_DATA_DIR", str(data_dir.parent / "again"))
    assert files_of(demodata.ensure_demo_dataset("smoke", source="filter")) == first
    other_seed = demodata.ensure_demo_dataset("smoke", source="filter", seed=1)
    assert files_of(other_seed)["photos/0000.png"] != first["photos/0000.png"]


def test_auto_source_uses_official_weights_when_present(data_dir, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "weights_available", lambda style: False)
    assert demodata.resolve_source("auto")[0] == "filter"

    rendered = []

    def fake_render(images, style):
        rendered.append((style, [image.shape for image in images]))
        return [255 - image for image in images]

    monkeypatch.setattr(pretrained, "weights_available", lambda style: style == "hayao")
    monkeypatch.setattr(pretrained, "render_cartoons", fake_render)
    root = demodata.ensure_demo_dataset("smoke")
    assert "cartoons from official:hayao" in capsys.readouterr().out
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["recipe"]["cartoon_source"] == "official:hayao"
    assert demodata.cartoon_source(root) == "official:hayao"
    assert demodata.cartoon_source(data_dir / "elsewhere") == ""
    # whole sources, once, downscaled to 1.6 x 64 on the short side: not crop by crop
    assert rendered == [("hayao", [(120, 102, 3), (102, 153, 3)])]  # 600x512, 427x640
    with pytest.raises(FileNotFoundError, match=r"download_official\('hosoda'\).*source='filter'"):
        demodata.ensure_demo_dataset("smoke", source="official:hosoda")
    with pytest.raises(ValueError, match="official:<style>"):
        demodata.resolve_source("cartoon")


def test_real_weights_are_picked_by_auto():
    if not os.environ.get("CGLIB_WEIGHTS_DIR"):
        pytest.skip("needs the official weights: set CGLIB_WEIGHTS_DIR to a folder holding "
                    "cartoongan-hayao.pth")
    if not pretrained.weights_available("hayao"):
        pytest.skip("CGLIB_WEIGHTS_DIR holds no cartoongan-hayao.pth")
    assert demodata.resolve_source("auto")[0] == "official:hayao"


def test_a_foreign_folder_is_never_deleted(data_dir):
    (data_dir / "demo-smoke").mkdir(parents=True)
    (data_dir / "demo-smoke" / "mine.txt").write_text("my own files")
    with pytest.raises(RuntimeError, match="not a demo data set built by cglib"):
        demodata.ensure_demo_dataset("smoke", source="filter")
    assert (data_dir / "demo-smoke" / "mine.txt").read_text() == "my own files"


def test_cartoon_filter_flattens_colours_and_repeats():
    image = read_image(demodata.source_path("skimage", "data/coffee.png"))[::4, ::4].copy()
    cartoon = demodata.cartoon_filter(image, colours=6)
    assert cartoon.shape == image.shape and cartoon.dtype == np.uint8
    colours = np.unique(cartoon.reshape(-1, 3), axis=0)
    assert len(colours) <= 12  # 6 flat colours and their darkened line versions
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1000
    np.testing.assert_array_equal(demodata.cartoon_filter(image, colours=6), cartoon)


def test_demo_command_builds_the_profile_asked_for(data_dir, capsys):
    from cglib.__main__ import main

    assert main(["data", "demo", "--profile", "smoke", "--source", "filter"]) == 0
    assert (data_dir / "demo-smoke" / "manifest.json").is_file()
    assert main(["data", "demo", "--profile", "tiny"]) == 2
    assert "tiny" in capsys.readouterr().err


def test_film_clip_is_shots_of_the_cartoon_sources_and_gives_one_key_frame_each(tmp_path):
    from cglib import data

    path = demodata.film_clip(tmp_path / "film.mp4", "filter", shots=6, width=64, height=48,
                              fps=8)
    frames = list(data.key_frames(path, every_seconds=0.5))
    assert len(frames) == 6  # one sample per half-second shot
    assert [verdict for _, _, verdict in frames] == ["kept"] * 6  # a cut between shots
    assert all(frame.shape == (48, 64, 3) for _, frame, _ in frames)
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary left


def test_clips_move_as_named():
    photo = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    pan = demodata.clip_frames(photo, "pan", frames=5, width=40, height=30)
    scaled = cv2.resize(photo, (45, 30), interpolation=cv2.INTER_AREA)  # to the frame's height
    lefts = [0, 1, 2, 4, 5]  # 5 pixels of travel over 4 steps, rounded
    assert all(np.array_equal(frame, scaled[:, left:left + 40])
               for frame, left in zip(pan, lefts, strict=True))
    zoom = demodata.clip_frames(photo, "zoom", frames=3, width=40, height=30)
    still = cv2.resize(photo, (45, 30), interpolation=cv2.INTER_AREA)[:, 2:42]  # centre crop
    assert np.array_equal(zoom[0], still)
    assert np.array_equal(zoom[2][15, 20], still[15, 20])  # the centre stays, the rest grows
    assert np.abs(zoom[2].astype(int) - still).mean() > 10
    square = demodata.clip_frames(photo, "square", frames=3, width=40, height=30)
    changed = np.any(square[2] != still, axis=2)  # a 7-pixel square at the right edge
    assert (square[2][12:19, 33:40] == 128).all() and changed.sum() <= 49
    with pytest.raises(ValueError, match="motion='spin': use one of pan, zoom, square"):
        demodata.clip_frames(photo, "spin")
