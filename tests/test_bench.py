"""The video benchmark: warping errors and frames/s side by side, for the clips given."""

import pytest
from test_video import write_clip

from cglib import bench, pretrained
from cglib.__main__ import main


def test_bench_video_measures_the_clips_given(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "weights_available", lambda style: False)  # random weights
    clip = write_clip(tmp_path / "clip.mp4", frames=6, size=(48, 64), audio=None)
    results = bench.bench_video(quick=True, clips=[str(clip)])
    row = results["clip.mp4"]
    assert row["input"] < row["frame_by_frame"] and row["temporal"] < row["frame_by_frame"]
    assert 20 < row["min_psnr"] < 100 and row["max_gap_batches"] <= 1  # random weights, 64x48
    assert all(row[key] > 0 for key in ("fps_batch_4", "fps_batch_1", "fps_temporal"))
    printed = capsys.readouterr().out
    assert "random weights stands in" in printed and "clip.mp4" in printed


def test_only_bench_video_takes_clips(capsys):
    with pytest.raises(SystemExit, match="bench edges takes no clips; only bench video does"):
        main(["bench", "edges", "clip.mp4"])
