"""cglib.data: folder jobs (edges, import, film frames), the data set check, and reading a
data set (image folders as tensors, fixed images)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cglib import data
from cglib.__main__ import main
from cglib.edges import smooth_edges
from cglib.images import read_fitted, read_image, write_image


def picture(seed, height=48, width=64):
    """Smooth random colours, asymmetric left-right (so a flip shows)."""
    small = np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def write_good_and_bad(folder, seed=0):
    """Every kind of file a real folder holds; returns {name: reason prefix} of the bad ones."""
    folder.mkdir(parents=True, exist_ok=True)
    image = picture(seed)
    write_image(folder / "plain.png", image)
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    Image.fromarray(np.dstack([image, np.full(image.shape[:2], 200, np.uint8)])).save(
        folder / "rgba.png")
    Image.fromarray(image).convert("CMYK").save(folder / "cmyk.jpg")
    cv2.imwrite(str(folder / "sixteen.png"), image.astype(np.uint16) * 257)
    big = cv2.imencode(".png", cv2.resize(image, (320, 240)))[1].tobytes()
    (folder / "corrupt.png").write_bytes(big[:40] + bytes(range(256)) * 4)
    jpeg = cv2.imencode(".jpg", cv2.resize(image, (320, 240)))[1].tobytes()
    (folder / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (folder / "text.jpg").write_text("not a picture at all")
    write_image(folder / "tiny.png", picture(seed, 10, 10))
    return {"corrupt.png": "corrupt", "truncated.jpg": "truncated",
            "text.jpg": "not an image (it holds text", "tiny.png": "too small: 10x10"}


GOOD = {"plain", "gray", "rgba", "cmyk", "sixteen"}


def stamps(folder):
    return {path.name: (path.stat().st_mtime_ns, path.read_bytes())
            for path in sorted(folder.rglob("*.png"))}


# ----------------------------------------------------------------------------------------------
# smooth_folder and the edges command


def test_smooth_folder_writes_smoothed_fitted_pngs(tmp_path):
    for index in range(3):
        write_image(tmp_path / "src" / "sub" / f"{index}.jpg", picture(index))
    report = data.smooth_folder(tmp_path / "src", tmp_path / "dst", size=32, workers=1)
    assert len(report.written) == 3 and not report.rejected
    for index in range(3):
        out = read_image(tmp_path / "dst" / "sub" / f"{index}.png")
        expected = smooth_edges(read_fitted(tmp_path / "src" / "sub" / f"{index}.jpg", 32))
        np.testing.assert_array_equal(out, expected)


def test_smooth_folder_skips_what_is_up_to_date_and_redoes_what_changed(tmp_path):
    for index in range(3):
        write_image(tmp_path / "src" / f"{index}.png", picture(index))
    data.smooth_folder(tmp_path / "src", tmp_path / "dst", size=32, workers=1)
    before = stamps(tmp_path / "dst")
    again = data.smooth_folder(tmp_path / "src", tmp_path / "dst", size=32, workers=1)
    assert again.up_to_date == 3 and not again.written
    assert stamps(tmp_path / "dst") == before
    write_image(tmp_path / "src" / "1.png", picture(9))  # changed after its output
    changed = data.smooth_folder(tmp_path / "src", tmp_path / "dst", size=32, workers=1)
    assert [path.name for path in changed.written] == ["1.png"]
    after = stamps(tmp_path / "dst")
    assert after["0.png"] == before["0.png"] and after["2.png"] == before["2.png"]
    assert after["1.png"] != before["1.png"]
    resized = data.smooth_folder(tmp_path / "src", tmp_path / "dst", size=24, workers=1)
    assert len(resized.written) == 3  # another size is not up to date
    assert read_image(tmp_path / "dst" / "0.png").shape == (24, 24, 3)


def test_smooth_folder_in_worker_processes_gives_the_same_bytes(tmp_path, monkeypatch):
    write_good_and_bad(tmp_path / "src")
    serial = data.smooth_folder(tmp_path / "src", tmp_path / "serial", size=32, workers=1)
    monkeypatch.setattr(data, "PARALLEL_MIN_FILES", 0)
    parallel = data.smooth_folder(tmp_path / "src", tmp_path / "parallel", size=32, workers=2)
    assert parallel.rejected == serial.rejected
    assert {name: content for name, (_, content) in stamps(tmp_path / "parallel").items()} == \
        {name: content for name, (_, content) in stamps(tmp_path / "serial").items()}


def test_edges_command_with_bad_files_keeps_going_and_keeps_what_was_written(tmp_path, capsys):
    src, dst = tmp_path / "cartoons", tmp_path / "smoothed"
    write_image(src / "first.png", picture(5))
    write_image(dst / "unrelated.png", picture(6))  # an output from elsewhere
    assert main(["edges", str(src), str(dst), "--size", "32", "--workers", "1"]) == 0
    before = stamps(dst)
    bad = write_good_and_bad(src, seed=1)
    assert main(["edges", str(src), str(dst), "--size", "32", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 5, 1 already up to date, 4 rejected" in printed
    for name, reason in bad.items():
        assert f"{src / name}: {reason}" in printed
    after = stamps(dst)
    assert {name: after[name] for name in before} == before  # nothing rewritten or lost
    assert set(after) == {"unrelated.png", "first.png"} | {f"{name}.png" for name in GOOD}
    assert all(read_image(dst / f"{name}.png").shape == (32, 32, 3) for name in GOOD)


def test_edges_command_on_a_missing_folder_fails_at_once(tmp_path, capsys):
    assert main(["edges", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert f"folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_edges_command_says_what_is_wrong_in_one_line(tmp_path, capsys):
    """A file given as the source, a file given as the destination, a link loop: one line
    each, naming it, and a non-zero exit."""
    write_image(tmp_path / "cartoons" / "a.png", picture(0))
    (tmp_path / "taken").write_text("mine")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    cases = {(tmp_path / "cartoons" / "a.png", tmp_path / "out"): "a.png is a file, not a folder",
             (tmp_path / "cartoons", tmp_path / "taken"): "taken is a file",
             (tmp_path / "loop", tmp_path / "out"): "loop is a symbolic link loop"}
    for (src, dst), message in cases.items():
        assert main(["edges", str(src), str(dst), "--workers", "1"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, error
    assert (tmp_path / "taken").read_text() == "mine" and not (tmp_path / "out").exists()


def test_edges_command_that_writes_nothing_fails(tmp_path, capsys):
    (tmp_path / "cartoons").mkdir()
    (tmp_path / "cartoons" / "broken.png").write_bytes(b"not an image")
    assert main(["edges", str(tmp_path / "cartoons"), str(tmp_path / "out")]) == 1
    assert "wrote 0, 0 already up to date, 1 rejected" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# Film frames and the import command


def write_video(path, scenes, fps=10, seconds_each=1.0):
    """An MJPG .avi showing each scene (H x W x 3 uint8 RGB) for ``seconds_each``."""
    height, width = scenes[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for scene in scenes:
        for _ in range(round(fps * seconds_each)):
            writer.write(np.ascontiguousarray(scene[:, :, ::-1]))
    writer.release()


def film(path):
    a, b, c = picture(1), picture(2), picture(3)
    black = np.full_like(a, 4)
    flat = np.full_like(a, 128)  # a fade or blank card: no contrast
    write_video(path, [a, black, b, flat, a, c])


def test_key_frames_drop_duplicates_black_and_fades(tmp_path):
    film(tmp_path / "film.avi")
    samples = list(data.key_frames(tmp_path / "film.avi", every_seconds=0.5))
    verdicts = [verdict for _, _, verdict in samples]
    assert verdicts == ["kept", "near-duplicate", "near-black", "near-black", "kept",
                        "near-duplicate", "fade", "fade", "near-duplicate", "near-duplicate",
                        "kept", "near-duplicate"]
    assert [seconds for seconds, _, _ in samples] == pytest.approx(np.arange(12) * 0.5)
    kept = [frame for _, frame, verdict in samples if verdict == "kept"]
    assert kept[0].shape == (48, 64, 3)
    error = np.abs(kept[0].astype(int) - picture(1)).mean()  # MJPG is lossy
    assert error < 8 and error < np.abs(kept[0].astype(int) - picture(1)[:, :, ::-1]).mean() / 4


def test_key_frames_of_a_broken_video_raise_naming_it(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="broken.mp4"):
        list(data.key_frames(tmp_path / "broken.mp4"))


def import_command(src, out, domain, *extra):
    return main(["data", "import", *map(str, src), "--out", str(out), "--domain", domain,
                 "--size", "32", "--every", "0.5", "--workers", "1", *extra])


def test_import_photos_from_folders_and_films(tmp_path, capsys):
    src = tmp_path / "holiday"
    bad = write_good_and_bad(src / "day1")
    film(src / "day2" / "film.avi")
    (src / "day2" / "broken.mp4").write_bytes(b"\x00" * 100)
    (src / "notes.txt").write_text("ignored: neither image nor video")
    out = tmp_path / "set"
    assert import_command([src], out, "photos", "--test-fraction", "0.25") == 0
    printed = capsys.readouterr().out
    for name, reason in bad.items():
        assert f"{src / 'day1' / name}: {reason}" in printed

    manifest = json.loads((out / "manifest.json").read_text())
    run = manifest["imports"][-1]
    assert {key.split("/")[-1]: value.split(" (")[0] for key, value in run["rejected"].items()} \
        == {"corrupt.png": "corrupt", "truncated.jpg": "truncated",
            "text.jpg": "not an image", "tiny.png": "too small: 10x10, need at least 16 on the "
                                                    "short side",
            "broken.mp4": "cannot open the video"}
    assert run["videos"][str(src / "day2" / "film.avi")] == {
        "fade": 2, "kept": 3, "near-black": 2, "near-duplicate": 5}
    assert run["written"] == 5 + 3 and run["moved_to_test"] == 2  # 25% of 8
    assert manifest["counts"] == {"photos": 6, "photos_test": 2, "cartoons": 0,
                                  "cartoons_smoothed": 0}
    names = {path.name for path in (out / "photos").iterdir()} | {
        path.name for path in (out / "photos_test").iterdir()}
    assert "holiday__day1__plain.png" in names
    assert "holiday__day2__film__000000000ms.png" in names
    assert all(read_image(out / "photos" / name).shape == (32, 32, 3)
               for name in (n.name for n in (out / "photos").iterdir()))

    before = stamps(out)
    assert import_command([src], out, "photos", "--test-fraction", "0.25") == 0
    assert "wrote 0, 8 already up to date, 5 rejected" in capsys.readouterr().out
    assert stamps(out) == before  # nothing rewritten, nothing moved between the splits
    assert len(json.loads((out / "manifest.json").read_text())["imports"]) == 2


def test_import_cartoons_builds_the_smoothed_set(tmp_path, capsys):
    src = tmp_path / "style"
    for index in range(3):
        write_image(src / f"{index}.png", picture(index, 40, 40))
    out = tmp_path / "set"
    assert import_command([src], out, "cartoons") == 0
    for index in range(3):
        name = f"style__{index}.png"
        cartoon = read_image(out / "cartoons" / name)
        np.testing.assert_array_equal(read_image(out / "cartoons_smoothed" / name),
                                      smooth_edges(cartoon))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["imports"][0]["smoothing"]["written"] == 3
    assert manifest["counts"]["cartoons"] == manifest["counts"]["cartoons_smoothed"] == 3


def test_import_keeps_two_files_of_one_name_apart(tmp_path, capsys):
    write_image(tmp_path / "a" / "x.png", picture(1))
    write_image(tmp_path / "a" / "x.jpg", picture(2))
    assert import_command([tmp_path / "a" / "x.png", tmp_path / "a" / "x.jpg"],
                          tmp_path / "set", "photos", "--test-fraction", "0") == 0
    assert sorted(p.name for p in (tmp_path / "set" / "photos").iterdir()) == [
        "x-jpg.png", "x-png.png"]
    assert "wrote 2" in capsys.readouterr().out


def test_import_into_a_file_or_of_nothing_usable_fails(tmp_path, capsys):
    write_image(tmp_path / "src" / "a.png", picture(0))
    (tmp_path / "taken").write_text("mine")
    assert import_command([tmp_path / "src"], tmp_path / "taken", "photos") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "taken is a file" in error
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "b.png").write_bytes(b"not an image")
    assert import_command([tmp_path / "bad"], tmp_path / "set", "photos") == 1


def test_full_disk_while_importing_is_one_line_and_keeps_what_was_written(tmp_path, capsys,
                                                                          disk_full_at):
    for index in range(3):
        write_image(tmp_path / "src" / f"{index}.png", picture(index))
    disk_full_at(2)
    code = import_command([tmp_path / "src"], tmp_path / "set", "photos", "--workers", "1")
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error and "no space left on the device" in error
    assert len(list((tmp_path / "set" / "photos").iterdir())) == 1


def test_report_summary_names_the_output_folder_when_given(tmp_path):
    report = data.JobReport(written=[tmp_path / "a.png"], rejected={"b.jpg": "empty file"})
    assert report.summary() == "wrote 1, 0 already up to date, 1 rejected\n" \
                               "  skipped b.jpg: empty file"
    assert report.summary("out").splitlines()[0] == "out: wrote 1, 0 already up to date, " \
                                                    "1 rejected"


def test_manifest_is_json_with_sorted_keys_indented_by_two(tmp_path):
    data.write_manifest(tmp_path / "manifest.json", {"kind": "x", "counts": {"photos": 2}})
    assert (tmp_path / "manifest.json").read_text() == (
        '{\n  "counts": {\n    "photos": 2\n  },\n  "kind": "x"\n}\n')
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # written atomically


def test_import_of_a_missing_source_fails_before_writing(tmp_path, capsys):
    good = tmp_path / "good"
    write_image(good / "a.png", picture(0))
    assert import_command([good, tmp_path / "missing"], tmp_path / "set", "photos") == 2
    assert f"{tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()


def test_import_of_an_empty_path_fails_before_writing(tmp_path, capsys, monkeypatch):
    write_image(tmp_path / "here" / "a.png", picture(0))
    monkeypatch.chdir(tmp_path)  # an empty path would import the current folder
    assert import_command([""], tmp_path / "set", "photos") == 2
    assert "the input is an empty path" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()


def test_sigterm_while_importing_exits_143_and_the_rerun_sweeps_and_finishes(
        tmp_path, capsys, monkeypatch, sigterm_in_test):
    for index in range(3):
        write_image(tmp_path / "src" / f"{index}.png", picture(index))
    photos = tmp_path / "set" / "photos"
    photos.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    killed = photos / f".src__1.png.{int(done.stdout)}.0123abcd.tmp"  # a run killed by -9
    killed.write_bytes(b"half")
    run_image_job, calls = data.run_image_job, []

    def terminated_at_the_second(job):
        calls.append(job)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return run_image_job(job)

    monkeypatch.setattr(data, "run_image_job", terminated_at_the_second)
    assert import_command([tmp_path / "src"], tmp_path / "set", "photos") == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert not killed.exists()
    monkeypatch.undo()
    assert import_command([tmp_path / "src"], tmp_path / "set", "photos") == 0
    assert data.read_manifest(tmp_path / "set")["counts"]["photos"] + data.read_manifest(
        tmp_path / "set")["counts"]["photos_test"] == 3
    assert not [path for path in (tmp_path / "set").rglob(".*")]


# ----------------------------------------------------------------------------------------------
# The data set check


def test_check_dataset_counts_and_explains_what_is_missing(tiny_dataset):
    assert data.check_dataset(tiny_dataset) == {
        "photos": 6, "photos_test": 2, "cartoons": 6, "cartoons_smoothed": 6}
    with pytest.raises(FileNotFoundError, match=r"does not exist.*python -m cglib data demo"):
        data.check_dataset(tiny_dataset / "nope")
    shutil.rmtree(tiny_dataset / "cartoons_smoothed")
    with pytest.raises(FileNotFoundError,
                       match=r"no cartoons_smoothed images.*python -m cglib edges"):
        data.check_dataset(tiny_dataset)
    for path in (tiny_dataset / "photos").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"no photos images.*missing or empty"):
        data.check_dataset(tiny_dataset)


def test_image_folder_items_are_rgb_tensors_in_minus_one_to_one(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    image[0, 0] = (255, 0, 0)
    image[0, 1] = (0, 255, 127)
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "b.png", picture(0, 64, 80))  # fitted on the fly
    dataset = data.ImageFolder(tmp_path, image_size=32)
    item = dataset[0]
    assert item.dtype == torch.float32 and item.shape == (3, 32, 32)
    assert item[:, 0, 0].tolist() == [1.0, -1.0, -1.0]
    assert item[:, 0, 1].tolist() == pytest.approx([-1.0, 1.0, 127 / 127.5 - 1])
    expected = read_fitted(tmp_path / "b.png", 32).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(dataset[1].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_in_memory_serves_the_same_items_and_leaves_bad_files_out(tmp_path):
    for index in range(3):
        write_image(tmp_path / f"{index}.png", picture(index, 24, 24))
    (tmp_path / "1b.png").write_text("not an image")
    with pytest.warns(UserWarning, match=r"1b.png: not an image.*left out"):
        memory = data.ImageFolder(tmp_path, 24, in_memory=True)
    assert len(memory) == 3 and memory.images.dtype == np.uint8
    assert memory.images.shape == (3, 24, 24, 3)
    (tmp_path / "1b.png").unlink()
    disk = data.ImageFolder(tmp_path, 24)
    for index in range(3):
        assert torch.equal(memory[index], disk[index])


def test_only_a_large_folder_loads_with_a_progress_bar(tmp_path, monkeypatch, capsys):
    for index in range(3):
        write_image(tmp_path / f"{index}.png", picture(index, 24, 24))
    data.ImageFolder(tmp_path, 24, in_memory=True)
    assert "loading" not in capsys.readouterr().err  # a few images: no bar
    monkeypatch.setattr(data, "LOADING_BAR_FROM", 3)
    data.ImageFolder(tmp_path, 24, in_memory=True)
    assert f"loading {tmp_path.name}" in capsys.readouterr().err


def test_a_file_that_breaks_during_training_is_reported_once_and_replaced(tmp_path):
    for index in range(4):
        write_image(tmp_path / f"{index}.png", picture(index, 24, 24))
    dataset = data.ImageFolder(tmp_path, 24)
    (tmp_path / "1.png").write_bytes(b"")  # broken after listing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = [dataset[index] for index in range(4)]
        second = [dataset[index] for index in range(4)]
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 1 and "1.png: empty file" in messages[0]
    assert torch.equal(first[1], first[2]) and torch.equal(second[1], first[2])


def test_load_images_takes_the_first_readable_in_order(tmp_path):
    for index in range(4):
        write_image(tmp_path / f"{index}.png", picture(index, 40, 40))
    (tmp_path / "0b.png").write_text("oops")
    with pytest.warns(UserWarning, match="0b.png"):
        loaded = data.load_images(tmp_path, 3, 32)
    assert len(loaded) == 3
    for index, image in enumerate(loaded):
        np.testing.assert_array_equal(image, read_fitted(tmp_path / f"{index}.png", 32))
    with pytest.warns(UserWarning, match="0b.png"):
        assert len(data.load_images(tmp_path, 10, 32)) == 4
