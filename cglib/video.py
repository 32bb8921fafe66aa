"""Cartoonizing videos: every frame through the authors' network, with the timing, the
orientation and the sound of the original.

:func:`cartoonize_video` reads a video with FFmpeg (through PyAV), makes of its frames what
:func:`cglib.inference.cartoonize` makes of photos, a batch at a time (the same exact forward,
and the same exact tiles for large frames; the settings are resolved once per video) and
writes a new video in which only the pictures have changed:

- timing: every frame keeps its own timestamp in the input's time base and lasts until the
  next one, the last until the end the input declares, so the frame rate (a variable one
  included), the frame count and the duration the container declares are the input's;
- orientation: frames are cartoonized as they are stored, and the display matrix (the rotation
  a phone records instead of turning the pixels) is copied, so the output plays turned the same
  way;
- sound: every audio stream is copied packet for packet, never re-encoded (subtitle and data
  streams are not copied). Copied packets
  decode to the same samples when the output's container is of the input's family: encoder
  delays are recorded differently in MP4 (edit lists) and Matroska (codec delay), and a copy
  from one into the other gains or loses samples at the start. :func:`output_suffix` picks the
  container accordingly;
- colour: frames are decoded to RGB with the input's colour tags (matrix, range) and encoded
  with them, and the tags are copied.

The output is written to a temporary file beside the target and renamed into place when it is
complete (:func:`cglib.files.atomic_path`): an interrupted job leaves nothing under the target's
name.

While the generator runs, the next frames are decoded and the finished cartoons encoded, each in
a thread of its own (FFmpeg and torch let other threads run while they work), through short
queues that keep the frames' order: the output is the one a single thread writes. An error in
any of the three, Ctrl-C or SIGTERM stops the other two before the job ends.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
import torch
from av.sidedata.sidedata import Type as SideDataType
from torch import nn
from tqdm.auto import tqdm

from cglib import files, images, inference
from cglib import temporal as carry

#: Video encoders by the name callers use. ``"h264"``: H.264 in YUV 4:2:0 (libx264 at a
#: constant quality, ``crf``), which every player and browser plays; 4:2:0 needs even sides, so
#: an odd side loses its last row or column (cropped, so that every pixel is the network's).
#: ``"lossless"``: H.264 in RGB with quantizer 0 (libx264rgb): every decoded frame is exactly
#: the cartoon, at any size, in .mp4 or .mkv alike (so the audio copy stays exact), for tests
#: and for editing further; FFmpeg-based players (VLC, mpv) and editors read it, browsers and
#: QuickTime do not. FFV1 is exact too, but in Matroska only.
CODECS = {"h264": "libx264", "lossless": "libx264rgb"}

#: Output containers by target suffix: FFmpeg's muxer names.
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}

#: Muxer options: MP4 and QuickTime files with their index first, so that they start playing
#: before they are downloaded whole.
_MUXER_OPTIONS = {"mp4": {"movflags": "+faststart"}, "mov": {"movflags": "+faststart"}}

#: Constant rate factors libx264 takes: 0 is lossless in YUV, 18 looks like the input, 23 is
#: FFmpeg's default, each +6 about halves the size.
CRF_RANGE = range(0, 52)

class VideoError(images.ImageError):
    """A file that cannot be cartoonized as a video: ``path`` is the file, ``reason`` says
    what is wrong and what to do."""


def output_suffix(path: str | os.PathLike) -> str:
    """The suffix of ``path``'s cartoon: ``.mp4`` for an MP4 or QuickTime input whose audio
    codecs MP4 holds (the audio copy is then exact, and H.264 in .mp4 plays everywhere),
    ``.mkv`` for any other (Matroska, WebM, AVI: Matroska holds any audio, and copies Matroska
    audio exactly). Only the file's header is read."""
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".mov"):
        return ".mkv"
    try:
        with av.open(str(path)) as container:
            codecs = {stream.codec_context.name for stream in container.streams.audio}
    except av.FFmpegError:
        return ".mp4"  # unreadable: its job says why
    return ".mp4" if codecs <= _codecs_held("mp4") else ".mkv"


@functools.cache
def _codecs_held(container_format: str) -> frozenset[str]:
    """The codecs FFmpeg can write into a ``container_format`` file."""
    with av.open(io.BytesIO(), "w", format=container_format) as container:
        return frozenset(container.supported_codecs)


def check_encoding(codec: str, crf: int) -> None:
    """ValueError unless ``codec`` is one of :data:`CODECS` and ``crf`` in :data:`CRF_RANGE`;
    called before any work starts."""
    if codec not in CODECS:
        raise ValueError(f"codec={codec!r}: use one of {', '.join(CODECS)}")
    if crf not in CRF_RANGE:
        raise ValueError(f"crf={crf}: give a quality from 0 (best, largest) to 51; 18 looks "
                         "like the input")


# -- reading ---------------------------------------------------------------------------------------

def _open(path: Path) -> av.container.InputContainer:
    """``path`` opened for reading; VideoError when FFmpeg cannot read it."""
    if not path.is_file():
        raise VideoError(path, files.describe_missing(path))
    try:
        return av.open(str(path))
    except av.FFmpegError as error:
        raise VideoError(path, f"not a video FFmpeg can read ({error.strerror}); check that the "
                               "file is complete and plays, or convert it with ffmpeg") from None


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    """The first video stream of ``container``; VideoError when there is none."""
    if not container.streams.video:
        kinds = ", ".join(sorted({stream.type for stream in container.streams})) or "nothing"
        raise VideoError(path, f"holds no video stream (only {kinds}); give a video file")
    return container.streams.video[0]


def _first_frame(path: Path) -> av.VideoFrame:
    """The first decoded frame of ``path``'s video stream; VideoError when the file is not a
    video or its video stream decodes no frame."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        for frame in _frames(container, stream, {}, path):
            return frame
    raise VideoError(path, f"its video stream ({stream.codec_context.name}) decodes to no frame; "
                           "check that the file plays, or re-encode it with ffmpeg")


def _frames(reader: av.container.InputContainer, video: av.VideoStream,
            audio: dict[int, av.stream.Stream], path: Path
            ) -> Iterator[av.VideoFrame | av.Packet]:
    """The frames of ``video`` in display order, and between them, as they are read, the
    packets of the audio streams in ``audio`` (input stream index -> its output stream), made
    packets of their output streams, to be muxed. VideoError when the file is damaged."""
    packets = reader.demux([video, *(reader.streams[index] for index in audio)])
    while True:
        try:
            packet = next(packets)
            frames = packet.decode() if packet.stream is video else []
        except StopIteration:
            return
        except av.FFmpegError as error:
            raise VideoError(path, f"damaged ({error.strerror}); re-encode it with ffmpeg or "
                                   "use another copy") from None
        if packet.stream is not video and packet.dts is not None:  # None: the end marker
            packet.stream = audio[packet.stream.index]
            yield packet
        yield from frames


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    """The 3 x 3 display matrix (9 int32 in FFmpeg's layout: rotation and flips) that the
    decoder attached to ``frame``, or None."""
    for side_data in frame.side_data:
        if side_data.type == SideDataType.DISPLAYMATRIX:
            return struct.unpack("=9i", bytes(side_data))
    return None


def _expected_frames(stream: av.VideoStream, container: av.container.InputContainer
                     ) -> int | None:
    """The number of frames of ``stream``: from its header when it says, else its duration
    times its average rate; None when neither is known."""
    if stream.frames:
        return stream.frames
    rate = stream.average_rate
    if stream.duration and stream.time_base and rate:
        return round(stream.duration * stream.time_base * rate)
    if container.duration and rate:
        return round(container.duration / av.time_base * rate)
    return None


def _declared_end(stream: av.VideoStream, container: av.container.InputContainer
                  ) -> int | None:
    """Where ``stream`` ends as the file declares it, in its time base: its start plus its
    duration (the container's when the stream states none); None when neither is known. With
    a variable frame rate the last frame lasts until there, which only the header says."""
    start = stream.start_time or 0
    if stream.duration:
        return start + stream.duration
    if container.duration and stream.time_base:
        return start + round(Fraction(container.duration, av.time_base) / stream.time_base)
    return None


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """``frame`` as H x W x 3 uint8 RGB, converted with its own colour matrix and range."""
    return frame.to_ndarray(format="rgb24", src_color_range=frame.color_range)


# -- writing ---------------------------------------------------------------------------------------

class _Encoder:
    """The output video stream: cartoons in, packets muxed, each at its frame's timestamp.

    Timestamps must increase for the encoder and the muxer: a frame without one, or with one
    not after the last (damaged files have them), is placed one frame (at the average rate)
    after the last.
    """

    def __init__(self, writer: av.container.OutputContainer, source: av.VideoStream,
                 first: av.VideoFrame, size: tuple[int, int], codec: str, crf: int,
                 declared_end: int | None = None) -> None:
        rate = source.average_rate or source.guessed_rate or 25  # FFmpeg's default rate
        stream = writer.add_stream(CODECS[codec], rate=rate)
        stream.height, stream.width = size
        stream.time_base = stream.codec_context.time_base = source.time_base
        stream.pix_fmt = "yuv420p" if codec == "h264" else "rgb24"
        stream.codec_context.options = {"crf": str(crf)} if codec == "h264" else {"qp": "0"}
        if codec == "h264":
            for tag in ("colorspace", "color_range", "color_primaries", "color_trc"):
                setattr(stream.codec_context, tag, getattr(source.codec_context, tag))
        if source.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = source.sample_aspect_ratio
        matrix = _display_matrix(first)
        if matrix is not None:
            stream.set_display_matrix(matrix)
        self.writer, self.stream, self.codec, self.size = writer, stream, codec, size
        self.time_base = source.time_base
        self.step = max(1, round(1 / (rate * source.time_base)))  # one frame, in time_base
        self.declared_end = declared_end
        self.frames, self.first, self.last, self.end = 0, None, None, 0
        self.waiting: av.VideoFrame | None = None  # the last frame, until its duration is known
        self.durations: dict[int, int] = {}  # by timestamp, of frames in the encoder
        self.held: av.Packet | None = None
        self.first_dts: int | None = None

    def add(self, cartoon: np.ndarray, like: av.VideoFrame) -> None:
        """Encode ``cartoon`` (H x W x 3 uint8 RGB, cropped to the stream's size) at the
        timestamp of the input frame ``like``; it lasts until the next frame's timestamp (the
        last one until the input's declared end, :meth:`finish`)."""
        height, width = self.size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(cartoon[:height, :width]),
                                           format="rgb24")
        if self.codec == "h264":
            frame = frame.reformat(format="yuv420p", dst_colorspace=like.colorspace,
                                   dst_color_range=like.color_range)
        pts = like.pts
        if self.last is not None and (pts is None or pts <= self.last):
            pts = self.last + self.step
        frame.pts, frame.time_base = pts or 0, self.time_base
        frame.duration = like.duration or self.step
        if self.waiting is not None:
            self._encode(self.waiting, frame.pts - self.waiting.pts)
        self.waiting, self.last = frame, frame.pts

    def _encode(self, frame: av.VideoFrame, duration: int) -> None:
        """Encode ``frame``, lasting ``duration`` (in the time base), and mux its packets."""
        frame.duration = self.durations[frame.pts] = duration
        self._mux(self.stream.encode(frame))
        self.frames += 1
        self.first = frame.pts if self.first is None else self.first
        self.end = max(self.end, frame.pts + duration)

    def _mux(self, packets: list[av.Packet]) -> None:
        """Mux ``packets`` (in decoding order) with their frames' durations, which the encoder
        leaves unset; the last packet so far is held back for :meth:`finish`."""
        for packet in packets:
            packet.duration = self.durations.pop(packet.pts, 0)
            if self.first_dts is None:
                self.first_dts = packet.dts
            if self.held is not None:
                self.writer.mux(self.held)
            self.held = packet

    def finish(self) -> float:
        """Encode the last frame, lasting until the input's declared end when that is after
        it (else as the input frame says, or one frame), flush the encoder and mux the last
        packet; returns the video's duration in seconds.

        MP4 and QuickTime take a stream's length from its last packet in decoding order (its
        decoding time plus its duration): with reordered frames (B-frames) that packet is not
        the last frame shown, and it is lengthened so that the file declares the duration of
        the frames' timestamps (a variable frame rate's last frame included)."""
        if self.waiting is not None:
            last, end = self.waiting, self.declared_end or 0
            self._encode(last, end - last.pts if end > last.pts else last.duration)
        self._mux(self.stream.encode())
        if self.held is not None:
            if self.writer.format.name in ("mp4", "mov"):
                length = self.end - self.first - (self.held.dts - self.first_dts)
                self.held.duration = max(self.held.duration, length)
            self.writer.mux(self.held)
        return float((self.end - self.first) * self.time_base) if self.frames else 0.0


def _copy_audio(writer: av.container.OutputContainer, reader: av.container.InputContainer,
                target: Path, source: Path) -> dict[int, av.stream.Stream]:
    """An output stream for each audio stream of ``reader``, by input stream index, with the
    same codec parameters, language and title; VideoError when ``target``'s container cannot
    hold one of them."""
    held, copies = writer.supported_codecs, {}
    for stream in reader.streams.audio:
        name = stream.codec_context.name
        if name not in held:
            raise VideoError(source, f"its audio stream {stream.index} ({name}) cannot be "
                                     f"copied into a {target.suffix} file; write a .mkv")
        copy = writer.add_stream_from_template(stream)
        copy.metadata.update({key: value for key, value in stream.metadata.items()
                              if key in ("language", "title")})
        copies[stream.index] = copy
    return copies


@contextlib.contextmanager
def _writing(source: Path, target: Path) -> Iterator[None]:
    """FFmpeg's errors in the block, which writes ``target``, as VideoError naming ``source``
    (one file rejected, not a whole job stopped); the file system's (OSError: a full disk, a
    name too long) pass as they are."""
    try:
        yield
    except av.FFmpegError as error:
        if isinstance(error, OSError):
            raise
        raise VideoError(source, f"FFmpeg could not write its cartoon {target} "
                                 f"({error.strerror or error}); re-encode the input with "
                                 "ffmpeg, or write it lossless (--lossless)") from None


# -- decoding and encoding beside the generator ----------------------------------------------------

#: Items decoded ahead of the generator, and items waiting for the encoder: enough to keep
#: FFmpeg busy while the generator runs, few enough to hold little memory.
QUEUED = 8

_Item = TypeVar("_Item")
_END = object()  # the end of a queue's items


def _put(items: queue.Queue, item: object, stop: Callable[[], bool]) -> bool:
    """Put ``item`` in ``items``, waiting while it is full unless ``stop()`` turns true
    (then False: the item was dropped)."""
    while not stop():
        try:
            items.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


@contextlib.contextmanager
def _read_ahead(items: Iterator[_Item], overlap: bool) -> Iterator[Iterator[_Item]]:
    """``items``, in order; with ``overlap`` made by a thread of their own up to
    :data:`QUEUED` ahead of the block (FFmpeg lets other threads run while it decodes). An
    error in making them is raised in the block where the next item would have come; leaving
    the block (at the end, on an error, Ctrl-C or SIGTERM) stops the thread."""
    if not overlap:
        yield items
        return
    ahead: queue.Queue = queue.Queue(QUEUED)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                if not _put(ahead, (item, None), stop.is_set):
                    return
            _put(ahead, (_END, None), stop.is_set)
        except BaseException as error:  # noqa: BLE001 - raised in the block instead
            _put(ahead, (_END, error), stop.is_set)

    def received() -> Iterator[_Item]:
        while True:
            item, error = ahead.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item

    thread = threading.Thread(target=read, name="cglib video decoding", daemon=True)
    thread.start()
    try:
        yield received()
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _write_behind(write: Callable[[_Item], None], overlap: bool
                  ) -> Iterator[Callable[[_Item], None]]:
    """``write``, called in order; with ``overlap`` by a thread of its own up to
    :data:`QUEUED` items behind the block (FFmpeg lets other threads run while it encodes),
    all of them written when the block ends. An error in ``write`` is raised in the block at
    its next call, or at its end; an error in the block (Ctrl-C and SIGTERM included) stops
    the thread, and what it had not written is dropped."""
    if not overlap:
        yield write
        return
    behind: queue.Queue = queue.Queue(QUEUED)
    stop, failed = threading.Event(), []

    def drain() -> None:
        try:
            while not stop.is_set():
                try:
                    item = behind.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                write(item)
        except BaseException as error:  # noqa: BLE001 - raised in the block instead
            failed.append(error)

    def put(item: _Item) -> None:
        if not _put(behind, item, lambda: bool(failed)):
            raise failed[0]

    thread = threading.Thread(target=drain, name="cglib video encoding", daemon=True)
    thread.start()
    try:
        yield put
        put(_END)
    except BaseException:
        stop.set()
        raise
    finally:
        thread.join()
    if failed:
        raise failed[0]


# -- the job ---------------------------------------------------------------------------------------

def _check_target(target: Path, codec: str, crf: int, overwrite: bool) -> None:
    """ValueError for settings or a target suffix cglib does not write, FileExistsError for an
    existing ``target`` unless ``overwrite`` (:func:`cglib.files.refuse_existing`)."""
    check_encoding(codec, crf)
    if target.suffix.lower() not in CONTAINERS:
        raise ValueError(f"cannot write {target}: use one of {', '.join(CONTAINERS)}")
    files.refuse_existing(target, overwrite)


def _first_picture(first: av.VideoFrame, source: Path, max_side: int | None) -> np.ndarray:
    """The first frame as the generator takes it: H x W x 3 uint8 RGB, after ``max_side``.
    VideoError when the frames are smaller than cartoonize takes."""
    try:
        picture = inference.check_image(_rgb(first))
    except inference.TooSmallError as error:
        raise VideoError(source, f"its frames are {error.reason}") from None
    return inference.shrink(picture, max_side)


def _output_size(picture: np.ndarray, codec: str) -> tuple[int, int]:
    """(height, width) of the output: the cartoon's (``picture``'s), made even for 4:2:0 by
    dropping an odd last row or column."""
    height, width = picture.shape[:2]
    if codec == "h264":
        return height - height % 2, width - width % 2
    return height, width


def _one_size(items: Iterator[av.VideoFrame | av.Packet], first: av.VideoFrame, source: Path
              ) -> Iterator[av.VideoFrame | av.Packet]:
    """``items`` (frames and audio packets, :func:`_frames`); VideoError at the first frame
    whose size is not ``first``'s."""
    for item in items:
        if isinstance(item, av.VideoFrame) and (item.width, item.height) != (first.width,
                                                                              first.height):
            raise VideoError(source, f"its frames change size, from {first.width}x"
                                     f"{first.height} to {item.width}x{item.height}; "
                                     "re-encode it at one size with ffmpeg")
        yield item


@dataclass(frozen=True)
class _Cartoonist:
    """Frames to cartoons exactly as :func:`cglib.inference.cartoonize` makes them, set up
    once per video: ``model`` and ``settings`` from :func:`cglib.inference.evaluating` and
    :meth:`cglib.inference.Settings.resolve`, ``batch_size`` frames at a time (never more
    pixels than one tile, as cartoonize groups images), then ``max_side``, ``keep_colors``
    and ``strength`` as cartoonize takes them; with ``carried``, from frame to frame
    (:class:`cglib.temporal.TemporalState`, whose ``carrying`` must hold ``model``), else
    frame by frame."""

    model: nn.Module
    settings: inference.Settings
    batch_size: int
    max_side: int | None
    keep_colors: bool
    strength: float
    carried: carry.TemporalState | None = None

    def cartoons(self, frames: list[av.VideoFrame]) -> list[np.ndarray]:
        """The cartoons of ``frames`` (of one size, the next ones of the video), H x W x 3
        uint8 RGB."""
        photos = [inference.shrink(_rgb(frame), self.max_side) for frame in frames]
        return carry.next_cartoons(self.model, photos, self.settings, self.carried,
                                   self.keep_colors, self.strength)


def _frames_per_batch(picture: np.ndarray, settings: inference.Settings,
                      batch_size: int | None) -> int:
    """Frames of ``picture``'s size run at once: ``batch_size`` (None: 1 on a CPU, else 4),
    fewer when that many would hold more pixels than one tile. On a 2-core AVX512-BF16 CPU at
    854x480 in bf16, the generator alone ran 0.50 to 0.57 frames/s one frame at a time, 0.50
    to 0.52 in batches of 2 and 0.48 in batches of 4 (two rounds of 4 frames each)."""
    if batch_size is None:
        batch_size = 1 if settings.device.type == "cpu" else 4
    height, width = picture.shape[:2]
    return max(1, min(batch_size, settings.tile * settings.tile // (height * width)))


def _cartoonize_frames(cartoonist: _Cartoonist, items: Iterator[av.VideoFrame | av.Packet],
                       write: Callable[[av.Packet | tuple[np.ndarray, av.VideoFrame]], None],
                       bar: tqdm) -> None:
    """Every frame of ``items`` (frames and audio packets, :func:`_frames`) through
    ``cartoonist``, ``cartoonist.batch_size`` at a time, to ``write`` as (cartoon, frame); the
    audio packets to ``write`` as they come, before the cartoons of the batch they came in;
    ``bar`` counts the frames."""
    batch: list[av.VideoFrame] = []
    for item in items:
        if isinstance(item, av.Packet):
            write(item)
            continue
        batch.append(item)
        if len(batch) == cartoonist.batch_size:
            _cartoonize_batch(cartoonist, batch, write, bar)
            batch = []
    if batch:
        _cartoonize_batch(cartoonist, batch, write, bar)


def _cartoonize_batch(cartoonist: _Cartoonist, batch: list[av.VideoFrame],
                      write: Callable[[tuple[np.ndarray, av.VideoFrame]], None],
                      bar: tqdm) -> None:
    """The frames of ``batch`` through ``cartoonist`` at once, to ``write`` in order."""
    for cartoon, frame in zip(cartoonist.cartoons(batch), batch, strict=True):
        write((cartoon, frame))
    bar.update(len(batch))


def _writer(encoder: _Encoder, writer: av.container.OutputContainer
            ) -> Callable[[av.Packet | tuple[np.ndarray, av.VideoFrame]], None]:
    """What writes the output: an audio packet muxed into ``writer``, a (cartoon, frame)
    encoded by ``encoder`` (:meth:`_Encoder.add`)."""
    def write(item: av.Packet | tuple[np.ndarray, av.VideoFrame]) -> None:
        if isinstance(item, av.Packet):
            writer.mux(item)
        else:
            encoder.add(*item)
    return write


def cartoonize_video(generator: nn.Module, source: str | os.PathLike,
                     target: str | os.PathLike, *, crf: int = 18, codec: str = "h264",
                     batch_size: int | None = None, overwrite: bool = False,
                     tile: int | str = "auto",
                     device: str | torch.device | None = None, precision: str = "auto",
                     max_side: int | None = None, keep_colors: bool = False,
                     strength: float = 1.0, temporal: bool | carry.TemporalSettings = True,
                     overlap: bool = True) -> dict:
    """Cartoonize the video file ``source`` into ``target`` (.mp4, .mov or .mkv) with
    ``generator``; see the module docstring for what is kept.

    ``codec``: ``"h264"`` at constant quality ``crf`` (0 to 51; 18 looks like the input), or
    ``"lossless"`` (see :data:`CODECS`). Each frame becomes what
    :func:`cglib.inference.cartoonize` makes of it with ``tile``, ``device``, ``precision``,
    ``max_side``, ``keep_colors`` and ``strength``; they go through the generator
    ``batch_size`` at a time (fewer when that many would hold more pixels than one tile; None:
    one on a CPU, where batches of large frames run slower than single frames, else 4). A
    progress bar counts the frames, with the time left. An existing ``target`` is an error
    unless ``overwrite``.

    ``temporal``: carry the normalizations' statistics and the previous cartoon from frame to
    frame, so that the cartoon does not flicker (:mod:`cglib.temporal`; True: its default
    :class:`~cglib.temporal.TemporalSettings`), or False: each frame exactly its own cartoon.

    Returns ``frames`` (written), ``fps`` (the input's average frame rate), ``seconds`` (the
    video's duration), ``codec`` (the FFmpeg encoder) and ``audio_streams`` (copied). Raises
    :class:`VideoError` when ``source`` is not a video, holds no video stream, decodes to no
    frame, has frames too small or of changing size, or is damaged, and when FFmpeg cannot
    write ``target``; the file system's errors (OSError) pass as they are.
    """
    source, target = Path(source), Path(target)
    _check_target(target, codec, crf, overwrite)
    settings = inference.Settings.resolve(generator, device, precision, tile)
    first = _first_frame(source)
    picture = _first_picture(first, source, max_side)
    container = CONTAINERS[target.suffix.lower()]
    carried = carry.state_for(temporal)
    with (_writing(source, target), _open(source) as reader,
          files.atomic_path(target) as temporary,
          av.open(str(temporary), "w", format=container,
                  options=_MUXER_OPTIONS.get(container)) as writer,
          inference.evaluating(generator, settings) as evaluated,
          carry.carrying(carried, evaluated) as model):
        video = _video_stream(reader, source)
        encoder = _Encoder(writer, video, first, _output_size(picture, codec), codec, crf,
                           _declared_end(video, reader))
        audio = _copy_audio(writer, reader, target, source)
        cartoonist = _Cartoonist(model, settings, _frames_per_batch(picture, settings, batch_size),
                                 max_side, keep_colors, strength, carried)
        items = _one_size(_frames(reader, video, audio, source), first, source)
        with (tqdm(total=_expected_frames(video, reader), unit="frame",
                   desc=f"cartoonize {source.name}") as bar,
              _read_ahead(items, overlap) as items,
              _write_behind(_writer(encoder, writer), overlap) as write):
            _cartoonize_frames(cartoonist, items, write, bar)
        seconds = encoder.finish()
    return {"frames": encoder.frames, "fps": float(video.average_rate or 0),
            "seconds": seconds, "codec": CODECS[codec], "audio_streams": len(audio)}
