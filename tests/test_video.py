"""Video: each frame is the photo's cartoon, the timing, rotation and sound are the input's, the
job is atomic, bad files are one clear line, and the cartoonize command takes videos."""

import faulthandler
import os
import signal
import sys
import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from cglib import flow, folders, images, inference, video
from cglib import temporal as temporal_module
from cglib.__main__ import main
from cglib.data import JobReport

FP32 = {"device": "cpu", "precision": "fp32"}



def picture(index: int, height: int, width: int) -> np.ndarray:
    """Frame ``index``: smooth colours under a bright bar that moves 4 pixels a frame."""
    rows, columns = np.mgrid[0:height, 0:width]
    image = np.stack([rows * 255 // height, columns * 255 // width,
                      np.full_like(rows, 40 + 10 * index)], axis=2).astype(np.uint8)
    image[:, 4 * index:4 * index + 6] = 255
    return image


def write_clip(path, frames=12, size=(48, 64), fps=12, audio="aac", rotation=None,
               timestamps=None):
    """A clip of ``frames`` :func:`picture` frames (H.264; VP9 in WebM) at ``fps``, or at
    ``timestamps`` (milliseconds: a variable frame rate, each frame lasting until the next and
    the last one second, as the packets say), with a 440 Hz tone in ``audio``
    (None: no sound; ``"only"``: the tone alone), and ``rotation`` (degrees, with a horizontal
    flip) stored as the display matrix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        if audio != "only":
            webm = str(path).endswith(".webm")
            stream = container.add_stream("libvpx-vp9" if webm else "libx264", rate=fps)
            stream.height, stream.width = size
            stream.pix_fmt = "yuv420p"
            if timestamps is not None:
                stream.codec_context.time_base = Fraction(1, 1000)
            if rotation is not None:
                stream.set_display_rotation(rotation, hflip=True)
        if audio is not None:
            _add_tone(container, "aac" if audio == "only" else audio)
        if audio != "only":
            ends = None if timestamps is None else dict(
                zip(timestamps[:frames], [*timestamps[1:frames], timestamps[frames - 1] + 1000],
                    strict=True))
            for index in range(frames):
                frame = av.VideoFrame.from_ndarray(picture(index, *size), format="rgb24")
                if timestamps is not None:
                    frame.pts, frame.time_base = timestamps[index], Fraction(1, 1000)
                _mux(container, stream.encode(frame), ends)
            _mux(container, stream.encode(), ends)
    return path


def _mux(container, packets, ends) -> None:
    """``packets`` muxed, lasting until ``ends[pts]`` (milliseconds) when ``ends`` is given."""
    for packet in packets:
        if ends is not None:
            packet.duration = ends[packet.pts] - packet.pts
        container.mux(packet)


def _add_tone(container, codec: str, seconds: float = 1.0) -> None:
    """One second of a 440 Hz sine, encoded with ``codec`` into ``container``."""
    rate = 48000 if codec == "libopus" else 44100
    stream = container.add_stream(codec, rate=rate, layout="mono")
    size = stream.codec_context.frame_size or 1024
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate) * 32767)
    tone = tone.astype(np.int16)[None]
    for start in range(0, tone.shape[1], size):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + size]),
                                           format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def read_video(path):
    """(frames as H x W x 3 uint8 RGB, their timestamps in seconds, the stream's average rate,
    the first frame's display matrix, the stream's encoder name and pixel format)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return ([frame.to_ndarray(format="rgb24") for frame in frames],
                [float(frame.pts * frame.time_base) for frame in frames], stream.average_rate,
                video._display_matrix(frames[0]), stream.codec_context.pix_fmt)


def read_audio(path):
    """Every audio stream's decoded samples, one array each."""
    with av.open(str(path)) as container:
        return [np.concatenate([frame.to_ndarray() for frame in container.decode(stream)],
                               axis=1) for stream in container.streams.audio]


def end_seconds(path) -> float:
    """The video stream's end: the last frame's timestamp plus its duration, in seconds."""
    with av.open(str(path)) as container:
        last = list(container.decode(video=0))[-1]
        return float((last.pts + last.duration) * last.time_base)


# -- what is kept ---------------------------------------------------------------------------------

def test_timing_rotation_and_sound_are_the_inputs(narrow, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", rotation=90)
    result = video.cartoonize_video(narrow, clip, tmp_path / "out.mp4", **FP32)
    frames, times, rate, matrix, pix_fmt = read_video(tmp_path / "out.mp4")
    original, original_times, original_rate, original_matrix, _ = read_video(clip)
    assert len(frames) == len(original) == result["frames"] == 12
    assert rate == original_rate == 12 and result["fps"] == 12
    assert times == original_times
    assert abs(end_seconds(tmp_path / "out.mp4") - end_seconds(clip)) < 1 / 12
    assert result["seconds"] == pytest.approx(1.0)
    assert matrix == original_matrix and matrix is not None  # 90 degrees and the flip
    sound, original_sound = read_audio(tmp_path / "out.mp4"), read_audio(clip)
    assert len(sound) == result["audio_streams"] == 1
    assert np.array_equal(sound[0], original_sound[0])
    assert pix_fmt == "yuv420p" and result["codec"] == "libx264"
    assert frames[0].shape == (48, 64, 3)  # stored unrotated, as the input
    assert not np.array_equal(frames[0], frames[1])


def test_lossless_frames_are_the_cartoons_of_the_decoded_frames(narrow, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", audio=None)
    options = {**FP32, "max_side": 33, "strength": 0.8}  # 33x25: odd sides kept in RGB
    result = video.cartoonize_video(narrow, clip, tmp_path / "out.mkv", codec="lossless",
                                    batch_size=5, temporal=False, **options)
    frames = read_video(tmp_path / "out.mkv")[0]
    expected = [inference.cartoonize(narrow, frame, **options) for frame in read_video(clip)[0]]
    assert result["codec"] == "libx264rgb" and result["audio_streams"] == 0
    assert [frame.shape for frame in frames] == [(25, 33, 3)] * 12
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(frames, expected, strict=True)) <= 1


def test_settings_are_resolved_once_and_frames_are_cartoonize_exactly(narrow, tmp_path,
                                                                     monkeypatch):
    clip = write_clip(tmp_path / "clip.mp4", audio=None)
    resolve, calls = inference.Settings.resolve, []

    def counted(*args, **kwargs):
        calls.append(args)
        return resolve(*args, **kwargs)

    monkeypatch.setattr(inference.Settings, "resolve", counted)
    video.cartoonize_video(narrow, clip, tmp_path / "out.mkv", codec="lossless", temporal=False,
                           **FP32)
    assert len(calls) == 1  # once per video, not once per batch
    with av.open(str(clip)) as container:
        decoded = [video._rgb(frame) for frame in container.decode(video=0)]
    expected = inference.cartoonize(narrow, decoded, batch_size=1, **FP32)
    frames = read_video(tmp_path / "out.mkv")[0]
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected, strict=True))


def test_videos_are_temporal_by_default_and_flicker_less(narrow, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", audio=None)
    for temporal in (True, False):
        video.cartoonize_video(narrow, clip, tmp_path / f"{temporal}.mkv", codec="lossless",
                               temporal=temporal, **FP32)
    decoded = read_video(clip)[0]
    expected = temporal_module.cartoonize_frames(narrow, decoded, **FP32)
    carried, single = read_video(tmp_path / "True.mkv")[0], read_video(tmp_path / "False.mkv")[0]
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(carried, expected, strict=True)) <= 1
    assert flow.warping_error(decoded, carried) < 0.7 * flow.warping_error(decoded, single)


def test_frames_that_change_size_are_one_clear_line(narrow, tmp_path):
    """Two MPEG-TS pieces of different sizes, one after the other, as a stream cut from two
    sources would be."""
    pieces = []
    for size, start in (((48, 64), 0), ((32, 48), 3)):
        with av.open(str(tmp_path / "piece.ts"), "w", format="mpegts") as container:
            stream = container.add_stream("libx264", rate=12)
            stream.height, stream.width = size
            for index in range(3):
                frame = av.VideoFrame.from_ndarray(picture(index, *size), format="rgb24")
                frame.pts = start + index
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        pieces.append((tmp_path / "piece.ts").read_bytes())
    (tmp_path / "cut.ts").write_bytes(b"".join(pieces))
    with pytest.raises(video.VideoError, match="cut.ts: its frames change size, from 64x48 to "
                                               "48x32; re-encode it at one size with ffmpeg"):
        video.cartoonize_video(narrow, tmp_path / "cut.ts", tmp_path / "out.mkv", **FP32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.ts", "piece.ts"]


def test_h264_drops_an_odd_last_row_and_column(narrow, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=3, audio=None)
    video.cartoonize_video(narrow, clip, tmp_path / "out.mp4", max_side=33, temporal=False,
                           **FP32)
    frames = read_video(tmp_path / "out.mp4")[0]
    expected = inference.cartoonize(narrow, read_video(clip)[0][0], max_side=33, **FP32)
    assert frames[0].shape == (24, 32, 3)
    assert np.abs(frames[0].astype(int) - expected[:24, :32]).mean() < 8  # 4:2:0 at crf 18


def test_a_variable_frame_rate_keeps_every_timestamp(narrow, tmp_path):
    milliseconds = [0, 40, 70, 150, 160, 300, 330, 360, 500, 540]
    clip = write_clip(tmp_path / "clip.mp4", frames=10, timestamps=milliseconds, audio=None)
    video.cartoonize_video(narrow, clip, tmp_path / "out.mp4", **FP32)
    assert read_video(tmp_path / "out.mp4")[1] == pytest.approx(
        [ms / 1000 for ms in milliseconds], abs=1e-3)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_variable_frame_rate_keeps_the_declared_duration(narrow, tmp_path, suffix):
    # the last frame lasts a second: only the container's duration says so
    milliseconds = [0, 40, 70, 150, 160, 300, 330, 360, 500, 540]
    clip = write_clip(tmp_path / f"clip{suffix}", frames=10, timestamps=milliseconds,
                      audio=None)
    declared = container_seconds(clip)
    assert declared > 1.4  # 1.54 s, less the B-frame delay in MP4's reckoning
    for codec, target in (("h264", "out.mp4"), ("h264", "out.mkv"), ("lossless", "rgb.mp4")):
        result = video.cartoonize_video(narrow, clip, tmp_path / target, codec=codec, **FP32)
        assert container_seconds(tmp_path / target) == pytest.approx(declared, abs=1e-3)
        assert result["seconds"] == pytest.approx(declared, abs=1e-3)


def container_seconds(path) -> float:
    """The duration ``path``'s container declares, in seconds."""
    with av.open(str(path)) as container:
        return container.duration / av.time_base


def test_matroska_stays_matroska_and_its_opus_sound_is_copied_exactly(narrow, tmp_path):
    clip = write_clip(tmp_path / "clip.webm", audio="libopus")
    assert video.output_suffix(clip) == ".mkv"
    assert video.output_suffix(write_clip(tmp_path / "phone.mov")) == ".mp4"
    video.cartoonize_video(narrow, clip, tmp_path / "out.mkv", **FP32)
    assert np.array_equal(read_audio(tmp_path / "out.mkv")[0], read_audio(clip)[0])
    assert len(read_video(tmp_path / "out.mkv")[0]) == 12


# -- errors and interruptions ---------------------------------------------------------------------

def test_bad_files_are_one_clear_line(narrow, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    write_clip(tmp_path / "tone.mp4", audio="only")
    cases = {"broken.mp4": "broken.mp4: not a video FFmpeg can read (Invalid data found when "
                           "processing input)",
             "tone.mp4": "tone.mp4: holds no video stream (only audio); give a video file",
             "absent.mp4": "absent.mp4: does not exist"}
    for name, message in cases.items():
        with pytest.raises(video.VideoError) as error:
            video.cartoonize_video(narrow, tmp_path / name, tmp_path / "out" / name, **FP32)
        assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_a_video_stream_without_frames_is_named(narrow, tmp_path):
    with av.open(str(tmp_path / "empty.mkv"), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        _add_tone(container, "aac")
    with pytest.raises(video.VideoError, match="empty.mkv: its video stream .h264. decodes to "
                                               "no frame"):
        video.cartoonize_video(narrow, tmp_path / "empty.mkv", tmp_path / "out.mkv", **FP32)


def test_frames_too_small_are_a_video_error_and_a_folder_job_goes_on(narrow, narrow_file,
                                                                     tmp_path, capsys):
    tiny = write_clip(tmp_path / "in" / "tiny.mp4", frames=2, size=(6, 10), audio=None)
    with pytest.raises(video.VideoError, match="tiny.mp4: its frames are too small: 10x6 "
                                               "pixels, cartoonize needs at least 8x8"):
        video.cartoonize_video(narrow, tiny, tmp_path / "out.mp4", **FP32)
    assert not (tmp_path / "out.mp4").exists()
    images.write_image(tmp_path / "in" / "beach.png", picture(0, 30, 44))
    code, printed, _ = run([tmp_path / "in", "--style", narrow_file, "--out",
                            tmp_path / "out"], capsys)
    assert code == 0 and "wrote 1, 0 already up to date, 1 rejected" in printed
    assert "tiny.mp4: its frames are too small: 10x6 pixels" in printed


def test_an_existing_target_is_refused_unless_overwrite(narrow, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=2, audio=None)
    (tmp_path / "out.mp4").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="out.mp4 exists already; pass overwrite=True"):
        video.cartoonize_video(narrow, clip, tmp_path / "out.mp4", **FP32)
    assert (tmp_path / "out.mp4").read_bytes() == b"mine"
    video.cartoonize_video(narrow, clip, tmp_path / "out.mp4", overwrite=True, **FP32)
    assert len(read_video(tmp_path / "out.mp4")[0]) == 2


def test_wrong_settings_are_refused_before_any_work(narrow, tmp_path):
    clip = tmp_path / "never-read.mp4"
    with pytest.raises(ValueError, match="crf=60: give a quality from 0"):
        video.cartoonize_video(narrow, clip, tmp_path / "out.mp4", crf=60)
    with pytest.raises(ValueError, match="codec='vp9': use one of h264, lossless"):
        video.cartoonize_video(narrow, clip, tmp_path / "out.mp4", codec="vp9")
    with pytest.raises(ValueError, match=r"cannot write .*out.avi: use one of .mp4, .mov, .mkv"):
        video.cartoonize_video(narrow, clip, tmp_path / "out.avi")


def test_timestamps_that_do_not_increase_are_placed_one_frame_on(narrow, tmp_path):
    with av.open(str(write_clip(tmp_path / "clip.mp4", frames=1, audio=None))) as reader, \
            av.open(str(tmp_path / "out.mp4"), "w") as writer:
        stream = reader.streams.video[0]
        first = next(reader.decode(stream))
        encoder = video._Encoder(writer, stream, first, (48, 64), "h264", 18)
        cartoon = np.zeros((48, 64, 3), np.uint8)
        for pts in (0, 1024, 1024, None, 5000):
            first.pts = pts
            encoder.add(cartoon, first)
        encoder.finish()
    assert encoder.step == 1024
    assert read_video(tmp_path / "out.mp4")[1] == pytest.approx(
        [pts / 12288 for pts in (0, 1024, 2048, 3072, 5000)])


# -- the command line -----------------------------------------------------------------------------

def command(*args) -> int:
    return main(["cartoonize", *map(str, args), "--device", "cpu", "--precision", "fp32"])


def run(args, capsys):
    code = command(*args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_an_interrupted_job_leaves_no_file(narrow_file, tmp_path, monkeypatch, capsys):
    write_clip(tmp_path / "in" / "clip.mp4")
    generate, calls = inference.generate, []

    def interrupted(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    monkeypatch.setattr(inference, "generate", interrupted)
    assert command(tmp_path / "in", "--style", narrow_file, "--out", tmp_path / "out") == 130
    assert calls == [1, 1]  # one frame at a time on a CPU
    assert list((tmp_path / "out").iterdir()) == []
    captured = capsys.readouterr()
    assert "stopped before the end; done so far:" in captured.out
    assert "wrote 0, 0 already up to date, 0 rejected" in captured.out
    assert "interrupted: finished outputs are kept" in captured.err


def test_command_cartoonizes_a_folder_of_photos_and_videos(narrow_file, tmp_path, capsys):
    folder = tmp_path / "trip"
    images.write_image(folder / "beach.png", picture(0, 30, 44))
    write_clip(folder / "day1" / "clip.mov")
    write_clip(folder / "night.webm", frames=4, audio="libopus")
    (folder / "broken.mkv").write_text("not a video")
    out = tmp_path / "out"
    code, printed, _ = run([folder, "--style", narrow_file, "--out", out], capsys)
    assert code == 0
    assert "wrote 3, 0 already up to date, 1 rejected" in printed
    assert "broken.mkv: not a video FFmpeg can read" in printed
    assert images.read_image(out / "beach_narrow.png").shape == (30, 44, 3)
    assert len(read_video(out / "day1" / "clip_narrow.mp4")[0]) == 12
    assert len(read_video(out / "night_narrow.mkv")[0]) == 4
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        "beach_narrow.png", "clip_narrow.mp4", "night_narrow.mkv"]


def test_ffmpeg_failing_to_write_one_video_rejects_it_and_the_job_goes_on(
        narrow_file, tmp_path, monkeypatch, capsys):
    write_clip(tmp_path / "in" / "clip.mp4", frames=2)
    images.write_image(tmp_path / "in" / "beach.png", picture(0, 30, 44))

    def fails(self, cartoon, like):
        raise av.error.ExternalError(-1, "Generic error in an external library")

    monkeypatch.setattr(video._Encoder, "add", fails)
    code, printed, _ = run([tmp_path / "in", "--style", narrow_file, "--out",
                            tmp_path / "out"], capsys)
    assert code == 0 and "wrote 1, 0 already up to date, 1 rejected" in printed
    assert (f"clip.mp4: FFmpeg could not write its cartoon {tmp_path / 'out' / 'clip_narrow.mp4'}"
            " (Generic error in an external library); re-encode the input with ffmpeg") in printed
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["beach_narrow.png"]


def test_an_output_that_cannot_be_written_rejects_its_input_only(narrow_file, tmp_path, capsys):
    long = "x" * 248  # the outputs' names, with "_narrow", are too long for the file system
    write_clip(tmp_path / "in" / f"{long}.mp4", frames=2)
    Image.fromarray(picture(0, 30, 44)).save(tmp_path / "in" / f"{long}.png")
    images.write_image(tmp_path / "in" / "beach.png", picture(1, 30, 44))
    code, printed, _ = run([tmp_path / "in", "--style", narrow_file, "--out",
                            tmp_path / "out"], capsys)
    assert code == 0 and "wrote 1, 0 already up to date, 2 rejected" in printed
    assert printed.count("the name is too long; choose a shorter path") == 2
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["beach_narrow.png"]


def test_command_skips_existing_videos_and_redoes_them_with_overwrite(narrow_file, tmp_path,
                                                                      capsys):
    write_clip(tmp_path / "clip.mp4", frames=4)
    args = [tmp_path / "clip.mp4", "--style", narrow_file, "--out", tmp_path / "out"]
    assert run(args, capsys)[0] == 0
    written = (tmp_path / "out" / "clip_narrow.mp4").stat().st_mtime_ns
    code, printed, _ = run(args, capsys)
    assert code == 0 and "wrote 0, 1 already up to date" in printed
    assert (tmp_path / "out" / "clip_narrow.mp4").stat().st_mtime_ns == written
    code, printed, _ = run([*args, "--overwrite", "--lossless"], capsys)
    assert code == 0 and "wrote 1, 0 already up to date" in printed
    assert read_video(tmp_path / "out" / "clip_narrow.mp4")[4] == "gbrp"  # RGB, lossless


def test_command_with_only_bad_videos_fails_and_names_them(narrow_file, tmp_path, capsys):
    write_clip(tmp_path / "tone.mp4", audio="only")
    code, printed, _ = run([tmp_path / "tone.mp4", "--style", narrow_file, "--out",
                            tmp_path / "out"], capsys)
    assert code == 1 and "wrote 0, 0 already up to date, 1 rejected" in printed
    assert "tone.mp4: holds no video stream (only audio)" in printed


def test_command_refuses_a_wrong_crf_in_one_line(narrow_file, tmp_path, capsys):
    code, _, error = run([tmp_path, "--style", narrow_file, "--out", tmp_path / "out",
                          "--crf", "60"], capsys)
    assert code == 2 and error == "error: crf=60: give a quality from 0 (best, largest) to 51; "\
                                  "18 looks like the input\n"


def test_files_take_a_generator_in_memory_with_a_label(narrow, narrow_file, tmp_path):
    images.write_image(tmp_path / "in" / "beach.png", picture(0, 30, 44))
    write_clip(tmp_path / "in" / "clip.mp4", frames=2, audio=None)
    options = {"lossless": True, **FP32}
    report = folders.cartoonize_files([tmp_path / "in"], narrow, tmp_path / "mine",
                                      label="mine", **options)
    assert sorted(p.name for p in report.written) == ["beach_mine.png", "clip_mine.mp4"]
    folders.cartoonize_files([tmp_path / "in"], str(narrow_file), tmp_path / "saved", **options)
    for name, saved in (("beach_mine.png", "beach_narrow.png"), ("clip_mine.mp4",
                                                                   "clip_narrow.mp4")):
        assert (tmp_path / "mine" / name).read_bytes() == (tmp_path / "saved" / saved).read_bytes()
    with pytest.raises(ValueError, match="style is a generator: give a label too"):
        folders.cartoonize_files([tmp_path / "in"], narrow, tmp_path / "other")
    with pytest.raises(ValueError, match="label='a/b': give a name for the outputs without"):
        folders.cartoonize_files([tmp_path / "in"], narrow, tmp_path / "other", label="a/b")


def test_plan_keeps_video_names_apart(tmp_path):
    for name in ("clip.mp4", "clip.mov", "clip.png"):
        (tmp_path / name).write_bytes(b"")
    jobs = folders.plan([tmp_path], tmp_path / "out", "hayao", "png", JobReport())
    assert sorted(job.target.name for job in jobs) == [
        "clip-mov_hayao.mp4", "clip-mp4_hayao.mp4", "clip_hayao.png"]


def test_command_temporal_off_writes_each_frame_s_own_cartoon(narrow_file, narrow, tmp_path,
                                                               capsys):
    clip = write_clip(tmp_path / "in" / "clip.mkv", audio=None)
    for mode in ("on", "off"):
        code, _, _ = run([clip, "--style", narrow_file, "--out", tmp_path / mode, "--lossless",
                          "--temporal", mode], capsys)
        assert code == 0
    decoded = read_video(clip)[0]
    single = inference.cartoonize(narrow, decoded, batch_size=1, **FP32)  # as on a CPU
    off = read_video(tmp_path / "off" / "clip_narrow.mkv")[0]
    on = read_video(tmp_path / "on" / "clip_narrow.mkv")[0]
    assert all(np.array_equal(a, b) for a, b in zip(off, single, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(on, single, strict=True))


# -- decoding and encoding beside the generator ---------------------------------------------------

def finishes(call, seconds: float = 120.0):
    """What ``call()`` returns or raises (as ("raised", error)), run in a thread; the test
    fails when it has not finished within ``seconds`` (a hang)."""
    outcome = []

    def run_call():
        try:
            outcome.append(("returned", call()))
        except BaseException as error:  # noqa: BLE001 - compared by the test
            outcome.append(("raised", error))

    thread = threading.Thread(target=run_call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    return outcome[0]


def video_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("cglib")]


@pytest.mark.parametrize("temporal", [False, True])
def test_overlapped_output_is_the_one_thread_output(narrow, tmp_path, temporal):
    clip = write_clip(tmp_path / "clip.mkv", audio="libopus")
    outputs = {}
    for overlap in (True, False):
        outputs[overlap] = tmp_path / f"{overlap}.mkv"
        video.cartoonize_video(narrow, clip, outputs[overlap], codec="lossless", batch_size=3,
                               temporal=temporal, overlap=overlap, **FP32)
    threaded, single = read_video(outputs[True]), read_video(outputs[False])
    assert len(threaded[0]) == 12
    assert all(np.array_equal(a, b) for a, b in zip(threaded[0], single[0], strict=True))
    assert threaded[1:] == single[1:]  # timestamps, rate, matrix, pixel format
    assert all(np.array_equal(a, b) for a, b in zip(read_audio(outputs[True]),
                                                    read_audio(outputs[False]), strict=True))
    assert video_threads() == []


def test_overlapped_stages_keep_the_order(monkeypatch):
    rng = np.random.default_rng(0)
    pauses = iter(rng.uniform(0, 0.004, 400))

    def slowly(items):
        for item in items:
            time.sleep(next(pauses))
            yield item

    written = []
    with (video._read_ahead(slowly(range(100)), overlap=True) as items,
          video._write_behind(lambda item: (time.sleep(next(pauses)), written.append(item)),
                              overlap=True) as write):
        for item in items:
            write(item)
    assert written == list(range(100)) and video_threads() == []


def test_a_decoder_error_surfaces_without_hanging(narrow, tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "clip.mp4", audio=None)
    frames = video._frames

    def damaged(*args):
        for index, item in enumerate(frames(*args)):
            if index == 5:
                raise video.VideoError(clip, "damaged (test)")
            yield item

    monkeypatch.setattr(video, "_frames", damaged)
    kind, error = finishes(lambda: video.cartoonize_video(narrow, clip, tmp_path / "out.mp4",
                                                          batch_size=2, **FP32))
    assert kind == "raised" and isinstance(error, video.VideoError)
    assert "damaged (test)" in str(error)
    assert list(tmp_path.iterdir()) == [clip] and video_threads() == []


def test_an_encoder_error_surfaces_without_hanging(narrow, tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "clip.mp4")
    add, calls = video._Encoder.add, []

    def fails(self, cartoon, like):
        calls.append(like.pts)
        if len(calls) == 3:
            raise av.error.ExternalError(-1, "Generic error in an external library")
        add(self, cartoon, like)

    monkeypatch.setattr(video._Encoder, "add", fails)
    kind, error = finishes(lambda: video.cartoonize_video(narrow, clip, tmp_path / "out.mp4",
                                                          **FP32))
    assert kind == "raised" and isinstance(error, video.VideoError)
    assert "FFmpeg could not write its cartoon" in str(error)
    assert len(calls) == 3  # nothing was encoded after the error
    assert list(tmp_path.iterdir()) == [clip] and video_threads() == []


@pytest.mark.parametrize("error", [RuntimeError("out of luck"), KeyboardInterrupt()])
def test_a_generator_error_surfaces_without_hanging(narrow, tmp_path, monkeypatch, error):
    clip = write_clip(tmp_path / "clip.mp4")
    generate, calls = inference.generate, []

    def fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise error
        return generate(*args, **kwargs)

    monkeypatch.setattr(inference, "generate", fails)
    kind, raised = finishes(lambda: video.cartoonize_video(narrow, clip, tmp_path / "out.mp4",
                                                           **FP32))
    assert kind == "raised" and raised is error
    assert list(tmp_path.iterdir()) == [clip] and video_threads() == []


def test_sigterm_while_encoding_stops_every_thread_and_leaves_no_file(
        narrow_file, tmp_path, monkeypatch, capsys, sigterm_in_test):
    write_clip(tmp_path / "in" / "clip.mp4")
    add, calls = video._Encoder.add, []

    def terminated_at_the_third(self, cartoon, like):
        calls.append(like.pts)
        if len(calls) == 3:  # from the encoding thread: the main thread is stopped
            os.kill(os.getpid(), signal.SIGTERM)
        add(self, cartoon, like)

    monkeypatch.setattr(video._Encoder, "add", terminated_at_the_third)
    faulthandler.dump_traceback_later(120, exit=True, file=sys.__stderr__)  # signals reach
    try:  # the main thread only: a hang ends the run, with a traceback
        code = command(tmp_path / "in", "--style", narrow_file, "--out", tmp_path / "out")
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert code == 143
    assert list((tmp_path / "out").iterdir()) == [] and video_threads() == []
    assert "terminated (SIGTERM)" in capsys.readouterr().err
