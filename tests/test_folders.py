"""cglib.folders: what counts as an input (one path, a list, a folder; never an output), files
the output format cannot hold, the progress bar, temporaries a killed run left, and SIGTERM."""

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from tqdm import TqdmWarning

from cglib import folders, images
from cglib.__main__ import main


def photo(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def cartoonize(inputs, out, narrow, **options):
    return folders.cartoonize_files(inputs, narrow, out, label="t", device="cpu",
                                    precision="fp32", **options)


def names(folder):
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file())


def dead_pid():
    """The id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


# -- inputs ---------------------------------------------------------------------------------------

def test_input_paths_take_one_path_or_a_list_and_refuse_an_empty_one(tmp_path):
    assert images.input_paths("photo.png") == [Path("photo.png")]
    assert images.input_paths(tmp_path) == [tmp_path]
    assert images.input_paths(("a.jpg", tmp_path)) == [Path("a.jpg"), tmp_path]
    for empty in ("", "  ", ["a.jpg", ""]):
        with pytest.raises(ValueError, match="is an empty path .*an unset variable"):
            images.input_paths(empty)
    with pytest.raises(ValueError, match="no input given"):
        images.input_paths([])


def test_a_string_is_one_path_not_its_characters(narrow, tmp_path, monkeypatch):
    images.write_image(tmp_path / "photo.png", photo(16, 20))
    images.write_image(tmp_path / "elsewhere" / "other.png", photo(16, 20, 1))
    monkeypatch.chdir(tmp_path)  # "." would be searched if the characters were paths
    report = cartoonize("photo.png", tmp_path / "out", narrow)
    assert report.rejected == {}
    assert names(tmp_path / "out") == ["photo_t.png"]


def test_an_empty_path_is_one_line_before_any_work(narrow_file, tmp_path, monkeypatch,
                                                   capsys):
    images.write_image(tmp_path / "here.png", photo(16, 20))
    monkeypatch.chdir(tmp_path)
    code = main(["cartoonize", "", "--style", str(narrow_file), "--out", "out"])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: the input is an empty path (''; an unset "
                                       "variable?)")
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()


# -- outputs are never inputs ---------------------------------------------------------------------

@pytest.mark.parametrize("inside", ["cartoons", ""], ids=["out-inside-input", "out-is-input"])
def test_a_rerun_never_cartoonizes_its_own_outputs(narrow, tmp_path, inside):
    folder = tmp_path / "photos"
    images.write_image(folder / "p0.png", photo(16, 20))
    images.write_image(folder / "trip" / "p1.png", photo(16, 20, 1))
    out = folder / inside if inside else folder
    first = cartoonize(folder, out, narrow)
    assert len(first.written) == 2
    again = cartoonize(folder, out, narrow)
    assert (again.written, again.up_to_date, again.rejected) == ([], 2, {})
    prefix = f"{inside}/" if inside else ""
    assert names(folder) == sorted(["p0.png", "trip/p1.png", f"{prefix}p0_t.png",
                                    f"{prefix}trip/p1_t.png"])


def test_a_named_file_in_the_output_folder_is_still_done(narrow, tmp_path):
    images.write_image(tmp_path / "p0.png", photo(16, 20))
    cartoonize(tmp_path, tmp_path, narrow)
    report = cartoonize(tmp_path / "p0_t.png", tmp_path, narrow)  # asked for by name
    assert [path.name for path in report.written] == ["p0_t_t.png"]


# -- a file the output format cannot hold ---------------------------------------------------------

def test_a_panorama_too_wide_for_webp_is_its_own_failure_every_run(narrow_file, tmp_path,
                                                                   capsys):
    folder = tmp_path / "in"
    images.write_image(folder / "panorama.png", photo(8, 17000))
    images.write_image(folder / "small.png", photo(16, 20))
    out = tmp_path / "out"
    args = ["cartoonize", str(folder), "--style", str(narrow_file), "--out", str(out),
            "--format", "webp", "--device", "cpu", "--precision", "fp32"]
    for written, up_to_date in ((1, 0), (0, 1)):  # a rerun reports it again and goes on
        assert main(args) == 0
        printed = capsys.readouterr().out
        assert f"wrote {written}, {up_to_date} already up to date, 1 rejected" in printed
        assert (f"skipped {folder / 'panorama.png'}: could not write "
                f"{out / 'panorama_narrow.webp'}: 17000x8 pixels do not fit in WebP, which holds "
                "at most 16383 pixels a side; choose another format (png)") in printed
        assert names(out) == ["small_narrow.webp"]


def test_write_image_names_the_format_limit(tmp_path):
    with pytest.raises(images.ImageError, match=r"16384x8 pixels do not fit in WebP, which "
                                                r"holds at most 16383"):
        images.write_image(tmp_path / "wide.webp", np.zeros((8, 16384, 3), np.uint8))
    assert images.write_image(tmp_path / "wide.png", np.zeros((8, 16384, 3), np.uint8))
    assert not (tmp_path / "wide.webp").exists()


# -- progress -------------------------------------------------------------------------------------

def test_the_progress_bar_of_a_small_photo_ends_at_100_percent(narrow, tmp_path):
    images.write_image(tmp_path / "small.png", photo(100, 123))  # 0.0123 MP
    with warnings.catch_warnings():
        warnings.simplefilter("error", TqdmWarning)  # tqdm warns when n passes total
        report = cartoonize(tmp_path / "small.png", tmp_path / "out", narrow)
    assert len(report.written) == 1


# -- temporaries and signals ----------------------------------------------------------------------

def test_temporaries_of_a_killed_run_are_swept_by_the_next(narrow, tmp_path):
    images.write_image(tmp_path / "in" / "p0.png", photo(16, 20))
    out = tmp_path / "out"
    out.mkdir()
    gone, running = dead_pid(), os.getppid()
    left = [out / f".p0_t.png.{gone}.0123abcd.tmp", out / f".clip_t.mp4.{gone}.deadbeef.tmp"]
    kept = [out / f".p0_t.png.{running}.0123abcd.tmp", out / ".notes.tmp"]
    for path in left + kept:
        path.write_bytes(b"part")
    cartoonize(tmp_path / "in", out, narrow)
    assert sorted(path.name for path in out.iterdir()) == sorted(
        ["p0_t.png", *(path.name for path in kept)])


def test_sigterm_stops_like_ctrl_c_keeps_what_is_done_and_exits_143(narrow_file, tmp_path,
                                                                    monkeypatch, capsys,
                                                                    sigterm_in_test):
    for index in range(3):
        images.write_image(tmp_path / "in" / f"{index}.png", photo(16, 20, index))
    write, calls = images.write_image, []

    def terminated_after_the_first(path, image):
        calls.append(path)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as `timeout` or Docker would
        return write(path, image)

    monkeypatch.setattr(images, "write_image", terminated_after_the_first)
    out = tmp_path / "out"
    code = main(["cartoonize", str(tmp_path / "in"), "--style", str(narrow_file), "--out",
                 str(out), "--device", "cpu", "--precision", "fp32"])
    captured = capsys.readouterr()
    assert code == 143
    assert "terminated (SIGTERM): finished outputs are kept" in captured.err
    assert "stopped before the end; done so far" in captured.out
    assert sorted(path.name for path in out.iterdir()) in (["0_narrow.png"],
                                                          ["0_narrow.png", "1_narrow.png"])
    assert signal.getsignal(signal.SIGTERM) is sigterm_in_test  # the handler is put back


def test_sigterm_during_a_video_leaves_no_file_and_exits_143(narrow_file, tmp_path,
                                                             monkeypatch, capsys,
                                                             sigterm_in_test):
    from cglib import demodata, inference

    demodata.pan_clip(tmp_path / "in" / "pan.mp4", 64, 48, 8)
    generate, calls = inference.generate, []

    def terminated(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return generate(*args, **kwargs)

    monkeypatch.setattr(inference, "generate", terminated)
    out = tmp_path / "out"
    assert main(["cartoonize", str(tmp_path / "in"), "--style", str(narrow_file), "--out",
                 str(out), "--device", "cpu", "--precision", "fp32"]) == 143
    assert list(out.iterdir()) == []  # neither a part of the video nor its temporary
    assert "terminated (SIGTERM)" in capsys.readouterr().err
