"""Benchmarks: the video benchmark (warping errors and frames/s side by side, for the clips
given) and the GPU check (``python -m cglib bench gpu``), whose code path runs at tiny sizes on
the CPU."""

import math

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
    assert 20 < row["min_psnr"] < 100  # random weights, 64x48
    # before and now compute the same cartoons: bit for bit in fp32; in bf16 the layouts round
    # differently (channels-last now), a few levels with random weights
    assert row["max_gap"] <= (1 if results["precision"] == "fp32" else 16)
    assert all(row[f"fps_{name}"] > 0 for name in bench.VIDEO_RUNS)
    assert row["speed_up"] == pytest.approx(row["fps_now"] / row["fps_before"])
    printed = capsys.readouterr().out
    assert "random weights stands in" in printed and "clip.mp4" in printed


def test_only_bench_video_takes_clips(capsys):
    with pytest.raises(SystemExit, match="bench edges takes no clips; only bench video does"):
        main(["bench", "edges", "clip.mp4"])


def test_gpu_check_at_tiny_sizes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CGLIB_DATA_DIR", str(tmp_path / "data"))
    check = bench.bench_gpu(quick=True)
    sizes = bench.GPU_CHECK["quick"]
    assert check["sizes"] == sizes
    assert list(check["train"]) == ["fp32", "bf16 autocast", "bf16 + channels-last"]
    for row in check["train"].values():
        init, adversarial = row["init_images_per_second"], row["images_per_second"]
        assert 0 < init and 0 < adversarial and math.isfinite(init + adversarial)
        assert row["epoch_seconds"] == pytest.approx(bench.PAPER_PHOTOS / adversarial)
        hours = (20 * bench.PAPER_PHOTOS / init + 200 * bench.PAPER_PHOTOS / adversarial) / 3600
        assert row["schedule_hours"] == pytest.approx(hours)
        assert row["peak_gib"] is None  # no device memory to read on a CPU
    expected = [f"{h}x{w} {run}" for h, w in sizes["frames"]
                for run in ("whole", f"tiles {sizes['tile']}")]
    assert list(check["inference"]) == expected
    assert all(row["frames_per_second"] > 0 for row in check["inference"].values())
    printed = capsys.readouterr().out
    assert "no CUDA GPU here" in printed and "bf16 + channels-last" in printed
    if not all(pretrained.weights_available(s) for s in ("hosoda", "hayao")):
        assert check["fine_tune"] == {} and "fine-tuning: skipped" in printed
        pytest.skip("the released hosoda and hayao weights are not in CGLIB_WEIGHTS_DIR: the "
                    "fine-tuning part of the check was skipped, as it says")
    row = check["fine_tune"]
    assert row["steps"] == bench.GPU_CHECK["quick"]["batch"]  # one chunk: the clock is at 0
    assert math.isfinite(row["psnr_start"]) and math.isfinite(row["psnr_end"])
    assert row["psnr_start"] != row["psnr_end"]
    assert "fine-tuning hosoda -> hayao" in printed
