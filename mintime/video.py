"""Decode a video and sample T frames from it (PyAV / FFmpeg on the CPU).

The sampling contract, shared with the DALI pipelines in ``dali_pipelines/video_decode.py``:
:func:`sample_frame_indices` picks ``min(T, N)`` frame indices spread uniformly over the *whole* clip of ``N``
frames, first and last frame included. A frame's index is its position in the decoder's output order
(presentation order), counting from 0.

How :func:`decode_sampled` works:

1. Open the container (path, bytes, or a uint8 array such as a Triton ``TYPE_UINT8`` tensor), refuse what is
   not a decodable video with a :class:`VideoDecodeError` whose message says why.
2. Frame count ``N``: the container's index when it has one (MP4/MOV, AVI), else a demux pass that counts the
   packets without decoding them (WebM/Matroska and other containers that store no count).
3. Decode every frame in order (H.264 clips here have one or two key frames, so seeking saves nothing), and
   convert to RGB only the sampled ones. The stream is decoded to its end, so the true count is known; when it
   differs from ``N`` the indices are recomputed with the true count and a second pass collects them (logged).
   A decode error mid-stream keeps what decoded (``truncated=True``, logged) when at least one frame did.
4. Apply the display-matrix rotation (phone videos) so that frames come out upright.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Union

import av
import av.error
import numpy as np

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_NUM_FRAMES",
    "VideoSource",
    "VideoDecodeError",
    "DecodedClip",
    "sample_frame_indices",
    "decode_sampled",
    "iter_frames",
    "probe",
    "read_source",
    "rotate_frames",
]

logger = logging.getLogger(__name__)

#: Refuse encoded inputs larger than this (bytes).
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Refuse frames with more pixels than this before decoding (8192x4096: 8K UHD and 8K 2:1 360-degree video).
DEFAULT_MAX_PIXELS = 8192 * 4096
#: Frames sampled per clip by default.
DEFAULT_NUM_FRAMES = 32

VideoSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

_STILL_IMAGE_FORMATS = {"image2", "image2pipe", "apng", "gif", "webp_pipe"}
_TEXT_FORMATS = {"tty", "bin", "xbin", "adf", "idf"}  # FFmpeg's ANSI/ASCII-art demuxers


class VideoDecodeError(ValueError):
    """The input is not a decodable video (the message says why: empty, not a video, truncated, ...)."""


@dataclass
class DecodedClip:
    """Frames sampled from one video.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB, upright (rotation applied), H = ``height``, W = ``width``.
        indices: (T,) int64, index of each frame in the decoder's output (presentation) order, ascending.
        fps: nominal frame rate of the stream (average rate); 0.0 when the container does not say.
        width: width of ``frames`` in pixels (display orientation, after any ``max_side`` downscale).
        height: height of ``frames`` in pixels.
        total_frames: number of frames in the clip (the ``N`` the indices were sampled from).
        rotation: display rotation applied, degrees counter-clockwise (0, 90, 180 or 270).
        truncated: decoding stopped early on an error, or fewer frames decoded than the container declared
            (or than the packets it holds); the frames returned are sampled from those that decoded.
        duration_s: duration in seconds, from the first frame's timestamp to the end of the last decoded
            frame (the container's figure when frames carry no timestamps; 0.0 when unknown).
        source_size: (width, height) of the video in display orientation, before any ``max_side`` downscale.
    """

    frames: np.ndarray
    indices: np.ndarray
    fps: float
    width: int
    height: int
    total_frames: int
    rotation: int = 0
    truncated: bool = False
    duration_s: float = 0.0
    source_size: tuple[int, int] = (0, 0)

    def info(self) -> np.ndarray:
        """The contract's ``video_decode_info`` tensor: (3,) float32 ``[fps, total_frames, rotation]``."""
        return np.array([self.fps, self.total_frames, self.rotation], dtype=np.float32)


# --- the sampling contract -----------------------------------------------------------------------------------


def sample_frame_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """Indices of the frames to sample from a clip: THE contract shared by PyAV and DALI decoding.

    ``T' = min(num_frames, total_frames)`` indices spread uniformly over ``[0, total_frames - 1]``, first and
    last frame included: ``idx[i] = floor(i * (N - 1) / (T' - 1) + 1/2)`` for ``i = 0 .. T'-1`` (round half
    up of ``linspace(0, N - 1, T')``; ``[0]`` when ``T' = 1``). Computed in exact integer arithmetic, so the
    DALI graph, which evaluates the same formula, gets the same indices. The result is strictly increasing
    (the step is at least 1), so no index repeats; a clip shorter than ``num_frames`` gives all its frames.

    Args:
        total_frames: number of frames ``N`` in the clip (0 gives an empty array).
        num_frames: number of frames wanted ``T`` (at least 1).

    Returns:
        (T',) int64, strictly increasing.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if total_frames < 0:
        raise ValueError(f"total_frames must be >= 0, got {total_frames}")
    t = min(int(num_frames), int(total_frames))
    if t == 0:
        return np.zeros(0, np.int64)
    den = max(t - 1, 1)
    i = np.arange(t, dtype=np.int64)
    return (2 * i * (total_frames - 1) + den) // (2 * den)


# --- input handling ------------------------------------------------------------------------------------------


@dataclass
class _Input:
    """An encoded video ready to open: a path, or the bytes themselves."""

    path: str | None
    data: bytes | None
    num_bytes: int

    def open(self) -> av.container.InputContainer:
        return av.open(self.path) if self.path is not None else av.open(io.BytesIO(self.data))

    def head(self, n: int = 4096) -> bytes:
        if self.data is not None:
            return self.data[:n]
        with open(self.path, "rb") as f:
            return f.read(n)


def read_source(source: VideoSource) -> bytes:
    """The encoded bytes of ``source`` (a path is read; an array is flattened; no size checks)."""
    inp = _input(source, max_bytes=None)
    if inp.data is not None:
        return inp.data
    return Path(inp.path).read_bytes()


def _input(source: VideoSource, max_bytes: int | None) -> _Input:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video file not found: {path}")
        n = os.path.getsize(path)
        inp = _Input(path=path, data=None, num_bytes=n)
    else:
        if isinstance(source, np.ndarray):
            if source.dtype == object and source.size == 1:  # a Triton BYTES tensor holding the file
                data = bytes(source.reshape(-1)[0])
            elif source.dtype in (np.uint8, np.int8):
                data = np.ascontiguousarray(source).reshape(-1).view(np.uint8).tobytes()
            else:
                raise TypeError(f"an encoded video array must be uint8, got {source.dtype}")
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            raise TypeError(f"unsupported video source type {type(source).__name__}")
        inp = _Input(path=None, data=data, num_bytes=len(data))
    what = f"file {inp.path}" if inp.path is not None else "input"
    if inp.num_bytes == 0:
        raise VideoDecodeError(f"empty input: the {what} has 0 bytes")
    if max_bytes is not None and inp.num_bytes > max_bytes:
        raise VideoDecodeError(f"too large: {inp.num_bytes} bytes exceeds max_bytes={max_bytes}")
    return inp


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="ignore")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return len(text) >= 0.9 * len(head) and printable >= 0.95 * len(text)


def _open_error(inp: _Input, err: Exception) -> VideoDecodeError:
    head = inp.head(64)
    detail = f"(FFmpeg: {getattr(err, 'strerror', None) or err})"
    if head[4:8] == b"ftyp" or head[4:8] in (b"mdat", b"moov", b"free", b"wide"):
        return VideoDecodeError(
            f"truncated or corrupt MP4/MOV file: the container index ('moov' box) is missing or unreadable "
            f"{detail}"
        )
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return VideoDecodeError(f"truncated or corrupt Matroska/WebM file {detail}")
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return VideoDecodeError(f"truncated or corrupt AVI file {detail}")
    if isinstance(err, av.error.EOFError):
        return VideoDecodeError(f"truncated input: the data ended before the container header {detail}")
    return VideoDecodeError(f"not a video: unrecognised container format {detail}")


def _open_video(inp: _Input, max_pixels: int) -> tuple[av.container.InputContainer, av.video.VideoStream]:
    """Open ``inp`` and return the container and its first video stream, or raise a VideoDecodeError."""
    if _looks_like_text(inp.head()):  # before FFmpeg, whose tty demuxer renders *.txt files as "video"
        raise VideoDecodeError("not a video: the input looks like text")
    try:
        container = inp.open()
    except (av.error.FFmpegError, OSError) as err:  # FFmpegError derives from OSError for file errors
        raise _open_error(inp, err) from err
    try:
        fmt = container.format.name
        if fmt in _TEXT_FORMATS:
            raise VideoDecodeError(f"not a video: text rendered as video by FFmpeg's {fmt!r} demuxer")
        if fmt in _STILL_IMAGE_FORMATS or fmt.endswith("_pipe"):
            raise VideoDecodeError(f"not a video: a still image (container format {fmt!r})")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(f"not a video: no video stream (streams found: {', '.join(kinds)})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or not getattr(ctx, "is_decoder", True):
            raise VideoDecodeError(f"unsupported codec for the PyAV/FFmpeg decoder: {stream.codec_tag!r}")
        w, h = ctx.width, ctx.height
        if w <= 0 or h <= 0:
            raise VideoDecodeError(f"truncated or corrupt: the video stream has no frame size ({w}x{h})")
        if w * h > max_pixels:
            raise VideoDecodeError(f"too large: frames of {w}x{h} pixels exceed max_pixels={max_pixels}")
        return container, stream
    except BaseException:
        container.close()
        raise


# --- stream facts --------------------------------------------------------------------------------------------


def _fps(stream: av.video.VideoStream) -> float:
    """The stream's nominal frame rate (0.0 when the container does not say)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0 and math.isfinite(float(rate)):
            return float(rate)
    return 0.0


def _duration_s(container: av.container.InputContainer, stream: av.video.VideoStream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def _count_packets(inp: _Input) -> int:
    """Count the video packets with data, without decoding (a demux pass; stops quietly at a corrupt tail)."""
    n = 0
    with inp.open() as container:
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    n += 1
        except av.error.FFmpegError as err:
            logger.warning("demux stopped after %d packets: %s", n, err)
    return n


def _normalise_rotation(degrees: float) -> int:
    """Display rotation (counter-clockwise degrees) rounded to a multiple of 90 in [0, 360)."""
    k = round(degrees / 90.0)
    if abs(degrees - 90 * k) > 1:
        logger.warning("display rotation of %.1f degrees rounded to %d", degrees, 90 * k)
    return (90 * k) % 360


def _metadata_rotation(stream: av.video.VideoStream) -> int:
    # Older FFmpeg builds exported the display matrix as a clockwise "rotate" tag.
    tag = stream.metadata.get("rotate")
    try:
        return _normalise_rotation(-float(tag)) if tag is not None else 0
    except ValueError:
        return 0


def rotate_frames(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Turn stored frames upright.

    Args:
        frames: (..., H, W, C) frames as stored in the file (a single frame or a stack).
        rotation: display rotation in degrees counter-clockwise (0, 90, 180, 270), as
            ``av.VideoFrame.rotation`` reports it: the frames are rotated by that angle.

    Returns:
        (..., H', W', C) contiguous, upright (H' and W' swap for 90 and 270).
    """
    k = (rotation // 90) % 4
    if k == 0:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=k, axes=(-3, -2)))


def _display_size(stored_w: int, stored_h: int, rotation: int) -> tuple[int, int]:
    return (stored_h, stored_w) if rotation in (90, 270) else (stored_w, stored_h)


def _output_size(stored_w: int, stored_h: int, max_side: int | None) -> tuple[int, int]:
    """Stored-orientation (width, height) to convert frames to, so that the longer side is <= ``max_side``."""
    if not max_side or max(stored_w, stored_h) <= max_side:
        return stored_w, stored_h
    scale = max_side / max(stored_w, stored_h)
    return max(1, round(stored_w * scale)), max(1, round(stored_h * scale))


def probe(
    source: VideoSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    count_packets: bool = False,
    read_rotation: bool = True,
) -> dict[str, Any]:
    """Describe a video without decoding more than its first frame.

    Args:
        source: path, encoded bytes, or a uint8 array holding the file.
        max_bytes: refuse larger inputs.
        max_pixels: refuse frames with more pixels than this.
        count_packets: also count the packets with a demux pass (no decoding) even when the container
            declares a frame count, and report the smaller of the two (catches truncated files).
        read_rotation: decode the first frame to read the display matrix (PyAV exposes it only as frame
            side data); False skips that decode and reports only a legacy ``rotate`` tag (else 0).

    Returns:
        dict with ``format`` (container), ``codec``, ``pix_fmt``, ``width``/``height`` (display orientation,
        after rotation), ``coded_width``/``coded_height`` (as stored), ``fps``, ``total_frames``,
        ``frame_count_source`` (``"container"`` or ``"demux"``), ``rotation`` (degrees counter-clockwise
        applied to make frames upright), ``duration_s``, ``num_bytes``.

    Raises:
        VideoDecodeError: the input is empty, too large, not a video, or has zero frames.
    """
    inp = _input(source, max_bytes)
    return _probe(inp, max_pixels, count_packets=count_packets, read_rotation=read_rotation)


def _probe(
    inp: _Input, max_pixels: int, *, count_packets: bool = False, read_rotation: bool = True
) -> dict[str, Any]:
    container, stream = _open_video(inp, max_pixels)
    with container:
        ctx = stream.codec_context
        info: dict[str, Any] = {
            "format": container.format.name,
            "codec": ctx.name,
            "pix_fmt": ctx.pix_fmt,
            "coded_width": ctx.width,
            "coded_height": ctx.height,
            "num_bytes": inp.num_bytes,
        }
        declared = int(stream.frames or 0)
        duration = _duration_s(container, stream)
        rotation = _metadata_rotation(stream)
        try:  # the display matrix reaches PyAV as frame side data: decode one frame to read it
            for frame in container.decode(stream) if read_rotation else ():
                rotation = _normalise_rotation(frame.rotation)
                break
        except av.error.FFmpegError as err:
            logger.debug("probe could not decode a first frame: %s", err)
        fps = _fps(stream)
    if declared > 0 and not count_packets:
        total, source = declared, "container"
    else:
        counted = _count_packets(inp)
        if declared > 0 and counted != declared:
            logger.warning("container declares %d frames but holds %d packets", declared, counted)
        if declared > 0 and counted == 0:
            raise VideoDecodeError(
                f"truncated or corrupt: the container declares {declared} frames but holds no frame data"
            )
        total, source = (min(declared, counted), "demux") if declared > 0 else (counted, "demux")
    if total == 0:
        raise VideoDecodeError("zero frames: the video stream holds no frame")
    width, height = _display_size(info["coded_width"], info["coded_height"], rotation)
    info.update(
        width=width,
        height=height,
        fps=fps if fps > 0 else (total / duration if duration > 0 else 0.0),
        total_frames=total,
        frame_count_source=source,
        rotation=rotation,
        duration_s=duration,
    )
    return info


# --- decoding ------------------------------------------------------------------------------------------------


@dataclass
class _Pass:
    """What one sequential decode pass produced."""

    frames: dict[int, np.ndarray]
    decoded: int  # frames that came out of the decoder
    error: str | None  # the error that stopped decoding early, if any
    rotation: int
    span_s: float  # first frame's time to the last frame's end, from the frames' timestamps (0: unknown)


class _Frame(NamedTuple):
    index: int
    rgb: np.ndarray | None
    rotation: int
    time: float | None  # presentation time, seconds
    end: float | None  # presentation time + duration, seconds


def _decode_pass(
    inp: _Input,
    wanted: set[int] | None,
    *,
    stop_after: int | None,
    max_side: int | None,
    max_pixels: int,
    threads: int,
) -> Iterator[_Frame]:
    """Decode in order and yield every frame, converted to upright RGB only when its index is ``wanted``."""
    container, stream = _open_video(inp, max_pixels)
    with container:
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        index = 0
        size: tuple[int, int] | None = None
        rotation = 0
        for packet in container.demux(stream):
            for frame in stream.decode(packet):
                if size is None:
                    rotation = _normalise_rotation(frame.rotation)
                    size = _output_size(frame.width, frame.height, max_side)
                rgb = None
                if wanted is None or index in wanted:
                    rgb = frame.to_ndarray(
                        format="rgb24", width=size[0], height=size[1], interpolation="AREA"
                    )
                    rgb = rotate_frames(rgb, rotation)
                time = frame.time
                end = None
                if time is not None and frame.duration and frame.time_base:
                    end = time + float(frame.duration * frame.time_base)
                yield _Frame(index, rgb, rotation, time, end)
                index += 1
                if stop_after is not None and index > stop_after:
                    return


def _collect(
    inp: _Input, wanted: set[int], *, to_end: bool, max_side: int | None, max_pixels: int, threads: int
) -> _Pass:
    frames: dict[int, np.ndarray] = {}
    decoded, rotation, error = 0, 0, None
    first_time: float | None = None
    last: _Frame | None = None
    gen = _decode_pass(
        inp,
        wanted,
        stop_after=None if to_end else max(wanted),
        max_side=max_side,
        max_pixels=max_pixels,
        threads=threads,
    )
    try:
        for last in gen:
            decoded, rotation = last.index + 1, last.rotation
            if first_time is None:
                first_time = last.time
            if last.rgb is not None:
                frames[last.index] = last.rgb
    except av.error.FFmpegError as err:
        error = str(err)
    span = 0.0
    if last is not None and first_time is not None and last.time is not None:
        span = (last.end if last.end is not None else last.time) - first_time
    return _Pass(frames=frames, decoded=decoded, error=error, rotation=rotation, span_s=max(span, 0.0))


def decode_sampled(
    source: VideoSource,
    num_frames: int = DEFAULT_NUM_FRAMES,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    threads: int = 0,
) -> DecodedClip:
    """Decode ``num_frames`` frames spread uniformly over a video (see :func:`sample_frame_indices`).

    Args:
        source: path, encoded bytes, or a uint8 array holding the file (any shape; a Triton ``TYPE_UINT8``
            tensor with its batch dimension is fine).
        num_frames: frames wanted ``T``; a shorter clip gives all its frames.
        max_bytes: refuse larger inputs.
        max_pixels: refuse frames with more pixels than this (checked before decoding).
        max_side: downscale frames so that their longer side is at most this (None: full resolution).
        threads: decoder threads (0: FFmpeg's choice).

    Returns:
        The sampled clip: frames (T', H, W, 3) uint8 RGB upright, indices (T',) int64.

    Raises:
        VideoDecodeError: empty, too large, not a video, zero frames, or no decodable frame.
        FileNotFoundError: a path that does not exist.
    """
    inp = _input(source, max_bytes)
    info = _probe(inp, max_pixels, read_rotation=False)
    declared = info["total_frames"]
    wanted = sample_frame_indices(declared, num_frames)
    first = _collect(
        inp, set(wanted.tolist()), to_end=True, max_side=max_side, max_pixels=max_pixels, threads=threads
    )
    total = first.decoded
    if total == 0:
        why = f" (FFmpeg: {first.error})" if first.error else ""
        raise VideoDecodeError(f"truncated or corrupt: no decodable frame in the video stream{why}")
    truncated = first.error is not None or total < declared
    if first.error is not None:
        logger.warning("decode error after %d frames, keeping what decoded: %s", total, first.error)
    frames = first.frames
    if total != declared:
        logger.warning("the stream decoded to %d frames, %d expected: resampling indices", total, declared)
        wanted = sample_frame_indices(total, num_frames)
        missing = set(wanted.tolist()) - frames.keys()
        if missing:
            second = _collect(
                inp, missing, to_end=False, max_side=max_side, max_pixels=max_pixels, threads=threads
            )
            frames = {**frames, **second.frames}
            if missing - second.frames.keys():  # decoding was not repeatable: keep what exists
                logger.warning("second pass stopped after %d frames: %s", second.decoded, second.error)
                wanted = np.array(sorted(i for i in wanted.tolist() if i in frames), np.int64)
    stack = np.stack([frames[i] for i in wanted.tolist()])
    height, width = stack.shape[1:3]
    return DecodedClip(
        frames=stack,
        indices=wanted.astype(np.int64),
        fps=info["fps"],
        width=int(width),
        height=int(height),
        total_frames=int(total),
        rotation=first.rotation,
        truncated=bool(truncated),
        duration_s=first.span_s or float(info["duration_s"]),
        source_size=_display_size(info["coded_width"], info["coded_height"], first.rotation),
    )


def iter_frames(
    source: VideoSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    threads: int = 0,
) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame of a video, in order (for writing an annotated copy).

    A decode error after at least one frame ends the iteration with a warning (as :func:`decode_sampled`
    keeps partial clips); before any frame it raises.

    Args:
        source: path, encoded bytes, or a uint8 array holding the file.
        max_bytes: refuse larger inputs.
        max_pixels: refuse frames with more pixels than this.
        max_side: downscale so that the longer side is at most this.
        threads: decoder threads (0: FFmpeg's choice).

    Yields:
        ``(index, frame)`` with frame (H, W, 3) uint8 RGB, upright.
    """
    inp = _input(source, max_bytes)
    count = 0
    gen = _decode_pass(inp, None, stop_after=None, max_side=max_side, max_pixels=max_pixels, threads=threads)
    try:
        for frame in gen:
            count += 1
            yield frame.index, frame.rgb
    except av.error.FFmpegError as err:
        if count == 0:
            raise VideoDecodeError(
                f"truncated or corrupt: no decodable frame in the video stream (FFmpeg: {err})"
            ) from err
        logger.warning("decode error after %d frames, stopping: %s", count, err)
        return
    if count == 0:
        raise VideoDecodeError("zero frames: the video stream holds no frame")
