"""Atomic writes, output folders and the one-line explanations of file-system errors."""

import errno
import json
import os

import pytest
import torch

from cglib import files


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "x.pt"
    with files.atomic_write(target) as file:
        torch.save({"a": torch.ones(2)}, file)

    def failing_save(obj, file):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"), files.atomic_write(target) as file:
        torch.save({"a": torch.zeros(2)}, file)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in target.parent.iterdir()] == ["x.pt"]  # no temporary left


def test_interrupt_inside_the_block_leaves_the_old_file(tmp_path):
    target = files.write_json(tmp_path / "config.json", {"lr": 1})
    with pytest.raises(KeyboardInterrupt), files.atomic_write(target, "w") as file:
        file.write('{"lr": ')
        raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"lr": 1}
    assert os.listdir(tmp_path) == ["config.json"]


def test_write_json_keeps_the_order_given_unless_asked_to_sort(tmp_path):
    value = {"b": 1, "a": [2]}
    assert files.write_json(tmp_path / "x.json", value).read_text() == \
        '{\n "b": 1,\n "a": [\n  2\n ]\n}\n'
    sorted_file = files.write_json(tmp_path / "y.json", value, indent=2, sort_keys=True)
    assert sorted_file.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'


def test_output_folder_refuses_a_file_and_creates_a_folder(tmp_path):
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(NotADirectoryError, match="taken is a file"):
        files.output_folder(tmp_path / "taken", "run folder")
    with pytest.raises(NotADirectoryError, match="taken is a file"):
        files.output_folder(tmp_path / "taken" / "deeper")
    made = files.output_folder(tmp_path / "new" / "run")
    assert made.is_dir() and made.is_absolute()


def test_refuse_existing_names_the_file_and_the_fix(tmp_path):
    files.refuse_existing(tmp_path / "new.onnx", overwrite=False)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "there.onnx").write_bytes(b"mine")
    for name in ("dangling", "there.onnx"):
        with pytest.raises(FileExistsError, match=f"{name} exists already; pass overwrite=True"):
            files.refuse_existing(tmp_path / name, overwrite=False)
    files.refuse_existing(tmp_path / "dangling", overwrite=True)


def test_describe_missing_tells_loops_and_broken_links_apart(tmp_path):
    assert files.describe_missing(tmp_path / "absent.jpg") == "does not exist"
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert files.describe_missing(tmp_path / "loop") == "is a symbolic link loop"
    (tmp_path / "dangling").symlink_to(tmp_path / "gone.jpg")
    assert files.describe_missing(tmp_path / "dangling").startswith("is a broken symbolic link")
    assert files.describe_missing(tmp_path) == "is a folder"


def test_explain_os_error_is_one_line_with_the_fix():
    line = files.explain_os_error(OSError(errno.ENOSPC, "No space left on device", "/runs/a.pt"))
    assert "no space left" in line and "/runs/a.pt" in line and "\n" not in line
    assert "permission denied" in files.explain_os_error(PermissionError(errno.EACCES, "x", "/a"))


def test_write_rejection_reports_one_file_but_a_device_error_stops_the_job():
    denied = PermissionError(errno.EACCES, "Permission denied", "/out/.x.png.1.tmp")
    assert files.write_rejection(denied, "/out/x.png") == (
        "could not write /out/x.png: permission denied; choose a folder you can write to")
    odd = OSError(errno.EIO, "Input/output error")
    assert files.write_rejection(odd, "/out/x.png") == "could not write /out/x.png: " \
                                                        "Input/output error"
    full = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError) as raised:
        files.write_rejection(full, "/out/x.png")
    assert raised.value is full


def test_move_into_place_replaces_the_target_with_the_whole_file(tmp_path):
    part = tmp_path / "model.pth.part"
    part.write_bytes(b"first half, ")
    with open(part, "ab") as file:  # written in two runs
        file.write(b"second half")
    target = files.write_bytes(tmp_path / "sub" / "model.pth", b"old")
    assert files.move_into_place(part, target) == target
    assert target.read_bytes() == b"first half, second half"
    assert not part.exists()


def test_atomic_path_moves_the_named_file_into_place_or_deletes_it(tmp_path):
    target = tmp_path / "sub" / "clip.mp4"
    with files.atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary.name.startswith(".clip.mp4.")
        temporary.write_bytes(b"whole")  # a writer that opens the file by its name
    assert target.read_bytes() == b"whole"
    with pytest.raises(KeyboardInterrupt), files.atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in target.parent.iterdir()) == ["clip.mp4"]


def test_unused_path_numbers_a_taken_name_and_counts_broken_links(tmp_path):
    wanted = tmp_path / "me_hayao.png"
    assert files.unused_path(wanted) == wanted
    wanted.write_bytes(b"first")
    (tmp_path / "me_hayao-2.png").symlink_to(tmp_path / "gone")
    assert files.unused_path(wanted) == tmp_path / "me_hayao-3.png"


def test_errors_on_the_hidden_temporary_name_the_file_asked_for(tmp_path):
    """A name the file system takes (255 bytes) but whose temporary it does not, and a folder
    where the file should go: each error names the path given, and nothing is left behind."""
    longest = tmp_path / ("n" * 250 + ".json")
    folder = tmp_path / "taken.json"
    (folder / "inside").mkdir(parents=True)
    for path, kind, code in ((longest, OSError, errno.ENAMETOOLONG),
                             (folder, IsADirectoryError, errno.EISDIR)):
        with pytest.raises(kind) as caught:
            files.write_json(path, {"lr": 1})
        assert caught.value.errno == code and caught.value.filename == str(path)
        assert ".tmp" not in files.explain_os_error(caught.value)
    with pytest.raises(IsADirectoryError) as caught, files.atomic_path(folder) as temporary:
        temporary.write_bytes(b"graph")
    assert caught.value.filename == str(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.json"]
    assert [p.name for p in folder.iterdir()] == ["inside"]


def ended_process_id():
    """The id of a process that has ended."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_temporary_names_are_recognised_and_swept_once_their_process_is_gone(tmp_path):
    target = tmp_path / "cartoon.png"
    with files.atomic_write(target) as file:
        (ours,) = tmp_path.iterdir()
        assert ours.name.startswith(f".cartoon.png.{os.getpid()}.") and ours.suffix == ".tmp"
        assert files.sweep_temporaries(tmp_path) == []  # this process is alive: kept
        file.write(b"x")
    gone = ended_process_id()
    left = [tmp_path / f".cartoon.png.{gone}.0123abcd.tmp", tmp_path / f".dataset.{gone}."
            "89abcdef.tmp"]
    left[0].write_bytes(b"half")
    (left[1] / "train_photo").mkdir(parents=True)  # an extraction killed half-way
    (left[1] / "train_photo" / "0.jpg").write_bytes(b"x")
    running = tmp_path / f".cartoon.png.{os.getppid()}.0123abcd.tmp"
    others = [running, tmp_path / ".cartoon.png.tmp", tmp_path / f".x.{gone}.0123.tmp"]
    for path in others:
        path.write_bytes(b"kept")
    assert sorted(files.sweep_temporaries(tmp_path)) == sorted(left)
    assert sorted(tmp_path.iterdir()) == sorted([target, *others])
    assert files.sweep_temporaries(tmp_path / "missing") == []


def test_sigterm_raises_terminated_inside_the_block_only(sigterm_in_test):
    import signal

    with pytest.raises(files.Terminated, match=r"terminated \(SIGTERM\)") as stopped:
        with files.terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between two bytecodes
                pass
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert files.exit_status(stopped.value) == 143
    assert files.exit_status(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) is sigterm_in_test
