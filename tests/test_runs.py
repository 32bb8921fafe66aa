"""The run folder read back: what RunFolder writes, read_run returns, typed; bad lines counted."""

import json

import pytest

from cglib import runs
from cglib.runs import EpochRecord


def epoch_line(phase, number, step, **changes):
    """A line of epochs.jsonl as the trainer writes it."""
    name = f"{phase}-epoch{number:03d}"
    return {"phase": phase, "epoch": number, "step": step, "seconds": 2.5,
            "images_per_second": 8.0, "samples": f"samples/{name}.png",
            "generator": f"generators/{name}.pt", "measures": {"ssim_to_photo": 0.5 + step / 100},
            **changes}


def test_read_run_returns_what_the_run_folder_wrote(tmp_path):
    folder = runs.RunFolder(tmp_path)
    folder.write_config({"seed": 3, "description": "a test"})
    for step in (1, 2, 3):
        folder.log({"step": step, "phase": "init", "epoch": 0, "content": 1.0 / step})
    folder.log_epoch(epoch_line("init", 1, 3))
    folder.log_epoch(epoch_line("adversarial", 1, 6, generator=None, measures={}))
    run = runs.read_run(tmp_path)
    assert (run.path, run.config) == (tmp_path, {"seed": 3, "description": "a test"})
    assert [line["content"] for line in run.metrics] == [1.0, 0.5, 1.0 / 3]
    assert run.epochs == [
        EpochRecord("init", 1, 3, 2.5, 8.0, "samples/init-epoch001.png",
                    "generators/init-epoch001.pt", {"ssim_to_photo": 0.53}),
        EpochRecord("adversarial", 1, 6, 2.5, 8.0, "samples/adversarial-epoch001.png")]
    assert run.epochs[1].name == "adversarial epoch 1 (step 6)"
    assert run.skipped == {"metrics.jsonl": 0, "epochs.jsonl": 0} and run.notes == []


def test_metric_lines_one_per_step_the_newest_wins_bad_lines_counted(tmp_path):
    lines = [{"step": 1, "seconds": 1.0}, {"step": 2, "seconds": 2.0},
             {"step": 2, "seconds": 9.0},  # a resumed run logged step 2 again
             {"step": True, "seconds": 4.0}, {"seconds": 5.0}, [1, 2], {"step": 3, "sec": 3.0}]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines) + '{"step": 4, "seco')
    run = runs.read_run(tmp_path)
    assert [line["step"] for line in run.metrics] == [1, 2, 3]
    assert run.metrics[1]["seconds"] == 9.0
    assert run.skipped["metrics.jsonl"] == 4  # no step (twice), not an object, cut short
    assert run.config == {} and "config.json could not be read" in run.notes[0]
    assert run.notes[1] == "4 unreadable line(s) of metrics.jsonl were skipped"


def test_epoch_lines_repeats_replace_and_bad_lines_are_counted(tmp_path):
    lines = [epoch_line("init", 1, 10), epoch_line("init", 2, 20),
             epoch_line("adversarial", 1, 30, measures={"edge_strength": 4, "note": "x"}),
             epoch_line("init", 2, 25),  # a resume redid it
             {**epoch_line("init", 3, 40), "epoch": "3"}, epoch_line("init", 4, 50, seconds="long"),
             {**epoch_line("init", 5, 60), "phase": None},
             {**epoch_line("init", 6, 70), "step": 1.5}]
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "epochs.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines) + '{"phase": "init", "epoch": 7, "st')
    run = runs.read_run(tmp_path)
    assert [(e.phase, e.epoch, e.step) for e in run.epochs] == [
        ("init", 1, 10), ("init", 2, 25), ("adversarial", 1, 30)]
    assert run.epochs[2].measures == {"edge_strength": 4.0}
    assert run.skipped == {"metrics.jsonl": 0, "epochs.jsonl": 5}


def test_a_folder_without_epochs_jsonl_has_no_epochs(tmp_path):
    """Epochs come from epochs.jsonl alone, not from the sample grids or generators there."""
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "init-epoch001.png").write_bytes(b"png")
    (tmp_path / "generator.pt").write_bytes(b"weights")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "phase": "init", "epoch": 0}\n')
    (tmp_path / "config.json").write_text('{"seed": 0}')
    run = runs.read_run(tmp_path)
    assert (run.epochs, len(run.metrics), run.notes) == ([], 1, [])


@pytest.mark.parametrize("make", ["empty folder", "missing", "file"])
def test_a_folder_without_a_run_is_refused(tmp_path, make):
    folder = tmp_path / "not-a-run"
    if make == "empty folder":
        folder.mkdir()
    elif make == "file":
        folder.write_text("hello")
    with pytest.raises(FileNotFoundError, match="config.json") as caught:
        runs.read_run(folder)
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)
