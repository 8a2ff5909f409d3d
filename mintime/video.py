"""Decode a video and sample T frames from it (PyAV / FFmpeg on the CPU), within a decode budget.

The sampling contract, shared with the DALI pipelines in ``dali_pipelines/video_decode.py``:
:func:`sample_frame_indices` picks ``min(T, N)`` frame indices spread uniformly over the *whole* clip of ``N``
frames, first and last frame included. A frame's index is its position in the decoder's output order
(presentation order), counting from 0.

How :func:`decode_sampled` works:

1. Check the input against the budget (:class:`mintime.limits.DecodeLimits`: bytes first, then, from the
   headers, frame size, frame count, duration and decoding work) and refuse what is not a decodable video with
   a :class:`VideoDecodeError` whose message says why. Only the input itself is read: FFmpeg gets a file
   object (no URL, no protocol), only the demuxers of :data:`ACCEPTED_FORMATS` may open it (no playlists,
   concat scripts, image sequences or network), any attempt of a demuxer to open another file is refused,
   and only the decoders of :data:`ACCEPTED_CODECS` run.
2. Frame count ``N``: the container's index when it has one (MP4/MOV, AVI), else a demux pass that counts the
   packets without decoding them (WebM/Matroska and other containers that store no count).
3. Decode every frame in order (H.264 clips here have one or two key frames, so seeking saves nothing), and
   convert to RGB only the sampled ones, scaled to the budget's frame size (see :mod:`mintime.limits`). The
   stream is decoded to its end, so the true count is known; when it differs from ``N`` the indices are
   recomputed with the true count and a second pass collects them (logged). A decode error mid-stream keeps
   what decoded (``truncated=True``, logged) when at least one frame did.
4. Apply the display-matrix rotation (phone videos) so that frames come out upright.

Every failure caused by the input's bytes is a :class:`VideoDecodeError` (a missing path is a
``FileNotFoundError``, a source of the wrong Python type a ``TypeError``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, Union

import av
import av.error
import numpy as np

from mintime.config import DEFAULTS
from mintime.limits import DEFAULT_LIMITS, DecodeLimits, output_size

__all__ = [
    "ACCEPTED_CODECS",
    "ACCEPTED_FORMATS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_NUM_FRAMES",
    "DecodeLimits",
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

#: Refuse encoded inputs larger than this (bytes): the budget's ``max_bytes``.
DEFAULT_MAX_BYTES = DEFAULT_LIMITS.max_bytes
#: Refuse coded frames with more pixels than this before decoding: the budget's ``max_frame_pixels``.
DEFAULT_MAX_PIXELS = DEFAULT_LIMITS.max_frame_pixels
#: Frames sampled per clip unless the caller says otherwise (the face stage's default, :mod:`mintime.config`).
DEFAULT_NUM_FRAMES = DEFAULTS.num_frames

VideoSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

#: The only FFmpeg demuxers allowed to open an input (demuxer name -> what the messages call it).
ACCEPTED_FORMATS: dict[str, str] = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4/MOV",
    "matroska,webm": "Matroska/WebM",
    "avi": "AVI",
    "mpeg": "MPEG program stream",
    "mpegts": "MPEG transport stream",
    "flv": "FLV",
    "asf": "ASF/WMV",
}
#: The only FFmpeg decoders run on a video stream (camera, phone, web and broadcast codecs).
ACCEPTED_CODECS = frozenset(
    {
        "h264",
        "hevc",
        "vp8",
        "vp9",
        "av1",
        "libdav1d",
        "libaom-av1",
        "mpeg4",
        "mpeg1video",
        "mpeg2video",
        "mjpeg",
        "h263",
        "flv",
        "wmv1",
        "wmv2",
        "wmv3",
        "vc1",
        "msmpeg4",
        "msmpeg4v2",
        "prores",
        "theora",
    }
)
# FFmpeg's format_whitelist matches any comma-separated element of a demuxer's name against this list.
_FORMAT_WHITELIST = ",".join(ACCEPTED_FORMATS)
_ACCEPTED_TEXT = "MP4/MOV, Matroska/WebM, AVI, MPEG-PS/TS, FLV, ASF/WMV"
_IO_BUFFER = 1 << 16
_MAX_MOOV_BYTES = 64 * 1024**2  # read at most this much of an MP4 index to name an unknown codec tag


class VideoDecodeError(ValueError):
    """The input is not a decodable video, or exceeds the decode budget (the message says why)."""


@dataclass
class DecodedClip:
    """Frames sampled from one video.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB, upright (rotation applied), H = ``height``, W = ``width``.
        indices: (T,) int64, index of each frame in the decoder's output (presentation) order, ascending.
        fps: nominal frame rate of the stream (average rate); 0.0 when the container does not say.
        width: width of ``frames`` in pixels (display orientation, after any downscale).
        height: height of ``frames`` in pixels.
        total_frames: number of frames in the clip (the ``N`` the indices were sampled from).
        rotation: display rotation applied, degrees counter-clockwise (0, 90, 180 or 270).
        truncated: decoding stopped early on an error, or fewer frames decoded than the container declared
            (or than the packets it holds); the frames returned are sampled from those that decoded.
        duration_s: duration in seconds, from the first frame's timestamp to the end of the last decoded
            frame (the container's figure when frames carry no timestamps; 0.0 when unknown).
        source_size: (width, height) of the video in display orientation, before any downscale.
        warnings: what a user must know about this decode (a partial decode), one sentence each.
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
    warnings: tuple[str, ...] = ()

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

    def reader(self) -> io.BufferedIOBase:
        """A file object over the input (FFmpeg reads only through it: no URL, no protocol)."""
        return open(self.path, "rb") if self.path is not None else io.BytesIO(self.data)

    def read(self, offset: int, n: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + n]
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(n)

    def head(self, n: int = 4096) -> bytes:
        return self.read(0, n)


def read_source(source: VideoSource, *, max_bytes: int | None = None) -> bytes:
    """The encoded bytes of ``source`` (a path is read; an array is flattened).

    Args:
        source: path, encoded bytes, or a uint8 array holding the file.
        max_bytes: refuse larger inputs before reading them (None: no size check).

    Raises:
        VideoDecodeError: an empty input, or one over ``max_bytes``.
    """
    inp = _input(source, max_bytes=max_bytes)
    if inp.data is not None:
        return inp.data
    return Path(inp.path).read_bytes()


def _check_size(num_bytes: int, max_bytes: int | None, what: str) -> None:
    if num_bytes == 0:
        raise VideoDecodeError(f"empty input: the {what} has 0 bytes")
    if max_bytes is not None and num_bytes > max_bytes:
        raise VideoDecodeError(f"too large: {num_bytes} bytes exceeds max_bytes={max_bytes}")


def _input(source: VideoSource, max_bytes: int | None) -> _Input:
    """Wrap ``source``; the size is checked before any copy."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video file not found: {path}")
        n = os.path.getsize(path)
        _check_size(n, max_bytes, f"file {path}")
        return _Input(path=path, data=None, num_bytes=n)
    if isinstance(source, np.ndarray):
        if source.dtype == object and source.size == 1:  # a Triton BYTES tensor holding the file
            item = source.reshape(-1)[0]
            if not isinstance(item, (bytes, bytearray, memoryview)):
                raise TypeError(f"a BYTES tensor must hold bytes, got {type(item).__name__}")
            _check_size(len(item), max_bytes, "input")
            data = bytes(item)
        elif source.dtype in (np.uint8, np.int8):
            _check_size(source.nbytes, max_bytes, "input")
            data = np.ascontiguousarray(source).reshape(-1).view(np.uint8).tobytes()
        else:
            raise TypeError(f"an encoded video array must be uint8, got {source.dtype}")
    elif isinstance(source, (bytes, bytearray, memoryview)):
        _check_size(memoryview(source).nbytes, max_bytes, "input")
        data = bytes(source)
    else:
        raise TypeError(f"unsupported video source type {type(source).__name__}")
    return _Input(path=None, data=data, num_bytes=len(data))


def _limits(limits: DecodeLimits | None, max_bytes: int | None, max_pixels: int | None) -> DecodeLimits:
    return (limits or DEFAULT_LIMITS).replace(max_bytes=max_bytes, max_frame_pixels=max_pixels)


_T = TypeVar("_T")


def _decode_errors(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Turn what FFmpeg or PyAV raises on bad bytes into a :class:`VideoDecodeError`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        try:
            return fn(*args, **kwargs)
        except VideoDecodeError:
            raise
        except av.error.FFmpegError as err:
            raise VideoDecodeError(f"cannot decode the video (FFmpeg: {_ffmpeg_message(err)})") from err
        except UnicodeError as err:
            raise VideoDecodeError(
                f"cannot decode the video: unreadable text in the container ({err})"
            ) from err
        except MemoryError as err:
            raise VideoDecodeError("too large: decoding ran out of memory") from err

    return wrapper


# --- identifying what is not an accepted video -----------------------------------------------------------------


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="ignore")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return len(text) >= 0.9 * len(head) and printable >= 0.95 * len(text)


_STILL_IMAGES: tuple[tuple[Callable[[bytes], bool], str], ...] = (
    (lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), "PNG"),
    (lambda h: h.startswith(b"\xff\xd8\xff"), "JPEG"),
    (lambda h: h.startswith(b"RIFF") and h[8:12] == b"WEBP", "WebP"),
    (lambda h: h.startswith((b"II*\x00", b"MM\x00*")), "TIFF"),
    (lambda h: h.startswith(b"BM") and len(h) > 14 and h[6:10] == b"\x00\x00\x00\x00", "BMP"),
    (
        lambda h: h[4:8] == b"ftyp" and h[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"),
        "HEIF/AVIF",
    ),
)


_AUDIO: tuple[tuple[Callable[[bytes], bool], str], ...] = (
    (lambda h: h.startswith(b"RIFF") and h[8:12] == b"WAVE", "WAV"),
    (lambda h: h.startswith(b"ID3") or h[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"), "MP3"),
    (lambda h: h.startswith(b"fLaC"), "FLAC"),
)


def _refuse_known_non_video(inp: _Input, limits: DecodeLimits) -> None:
    """Refuse, before FFmpeg sees them, inputs that are recognisably something else than a video."""
    head = inp.head()
    if head.startswith((b"GIF87a", b"GIF89a")):
        frames = _count_gif_frames(inp, limits)
        if frames > 1:
            raise VideoDecodeError(
                f"not a video: an animated GIF ({frames} frames); GIF animations are not accepted, "
                f"convert it to a video file ({_ACCEPTED_TEXT})"
            )
        raise VideoDecodeError("not a video: a still image (GIF)")
    for test, name in _STILL_IMAGES:
        if test(head):
            raise VideoDecodeError(f"not a video: a still image ({name})")
    for test, name in _AUDIO:
        if test(head):
            raise VideoDecodeError(f"not a video: an audio file ({name})")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"#EXT"):
        raise VideoDecodeError(
            "not a video: an M3U/HLS playlist (it names other files or URLs; playlists are not read)"
        )
    if text.startswith(b"ffconcat"):
        raise VideoDecodeError("not a video: an FFmpeg concat script (it names other files; not read)")
    if text.startswith(b"<?xml") or b"<MPD" in text[:512]:
        raise VideoDecodeError("not a video: an XML document (e.g. a DASH manifest; manifests are not read)")
    if _looks_like_text(head):  # before FFmpeg, whose tty demuxer renders *.txt files as "video"
        raise VideoDecodeError("not a video: the input looks like text")


def _count_gif_frames(inp: _Input, limits: DecodeLimits) -> int:
    """Frames of a GIF (its own demuxer, forced: nothing else is probed), at most ``max_frames + 1``."""
    n = 0
    with inp.reader() as fh, contextlib.suppress(av.error.FFmpegError, UnicodeError):
        with av.open(fh, format="gif", metadata_errors="replace", io_open=_refuse_nested_open) as c:
            for packet in c.demux():
                n += 1 if packet.size else 0
                if n > limits.max_frames:
                    break
    return n


def _refuse_nested_open(url: str, flags: int, options: dict[str, Any]) -> Any:
    """``io_open`` for FFmpeg: no demuxer may open another file or URL than the input itself."""
    raise PermissionError(f"the container refers to another file or URL ({url!r}), which is not read")


def _ffmpeg_message(err: Exception) -> str:
    return str(getattr(err, "strerror", None) or err)


def _open_error(inp: _Input, err: Exception) -> VideoDecodeError:
    if isinstance(err, PermissionError):
        return VideoDecodeError(f"not a video file on its own: {err}")
    head = inp.head(1 << 20)
    detail = f"(FFmpeg: {_ffmpeg_message(err)})"
    if head[4:8] == b"ftyp" or head[4:8] in (b"mdat", b"moov", b"free", b"wide"):
        return VideoDecodeError(
            f"truncated or corrupt MP4/MOV file: the container index ('moov' box) is missing or unreadable "
            f"{detail}"
        )
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        has_tracks = b"\x16\x54\xae\x6b" in head
        if has_tracks and b"\x1f\x43\xb6\x75" not in head and inp.num_bytes <= len(head):
            return VideoDecodeError(
                "has no frames: the Matroska/WebM file declares its tracks but holds no frame data (no Cluster)"
            )
        return VideoDecodeError(f"truncated or corrupt Matroska/WebM file {detail}")
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return VideoDecodeError(f"truncated or corrupt AVI file {detail}")
    if isinstance(err, av.error.EOFError):
        return VideoDecodeError(f"truncated input: the data ended before the container header {detail}")
    return VideoDecodeError(
        f"not a video: unrecognised or unaccepted container format (accepted: {_ACCEPTED_TEXT}) {detail}"
    )


# --- naming an unknown codec tag -------------------------------------------------------------------------------


def _boxes(buf: bytes, wanted: bytes) -> Iterator[bytes]:
    """Payloads of the child boxes of type ``wanted`` in an ISO-BMFF buffer."""
    pos = 0
    while pos + 8 <= len(buf):
        size, kind = struct.unpack(">I4s", buf[pos : pos + 8])
        header = 8
        if size == 1 and pos + 16 <= len(buf):
            size, header = struct.unpack(">Q", buf[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = len(buf) - pos
        if size < header:
            return
        if kind == wanted:
            yield buf[pos + header : pos + size]
        pos += size


def _first_box(buf: bytes, *path: bytes) -> bytes | None:
    for kind in path:
        found = next(_boxes(buf, kind), None)
        if found is None:
            return None
        buf = found
    return buf


def _mp4_video_tags(inp: _Input) -> list[bytes]:
    """The sample-entry fourcc of every video track of an MP4/MOV file (``stsd``), read from its ``moov``."""
    pos, moov = 0, None
    for _ in range(10_000):
        if pos + 8 > inp.num_bytes:
            break
        head = inp.read(pos, 16)
        size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if size == 1 and len(head) == 16:
            size, header = struct.unpack(">Q", head[8:16])[0], 16
        elif size == 0:
            size = inp.num_bytes - pos
        if size < header:
            break
        if kind == b"moov":
            moov = inp.read(pos + header, min(size - header, _MAX_MOOV_BYTES))
            break
        pos += size
    tags = []
    for trak in _boxes(moov or b"", b"trak"):
        hdlr = _first_box(trak, b"mdia", b"hdlr")
        stsd = _first_box(trak, b"mdia", b"minf", b"stbl", b"stsd")
        if hdlr is not None and hdlr[8:12] == b"vide" and stsd is not None and len(stsd) >= 16:
            tags.append(stsd[12:16])
    return tags


def _codec_tag(inp: _Input, fmt: str) -> str | None:
    """The container's name for the video codec (fourcc or Matroska CodecID), when it can be read."""
    if fmt.startswith("mov,"):
        tags = _mp4_video_tags(inp)
        return tags[0].decode("latin-1") if tags else None
    if fmt.startswith("matroska"):
        m = re.search(rb"\x86([\x81-\xbf])(V_[\x20-\x7e]{1,62})", inp.head(1 << 20))
        return m.group(2).decode("ascii") if m else None
    if fmt == "avi":
        m = re.search(rb"strh.{4}vids(.{4})", inp.head(1 << 16), flags=re.S)
        return m.group(1).decode("latin-1") if m else None
    return None


# --- opening -----------------------------------------------------------------------------------------------------


def _check_stream(
    container: av.container.InputContainer, inp: _Input, limits: DecodeLimits
) -> av.video.VideoStream:
    """The first video stream, if the container, its codec and its header figures are within the budget."""
    fmt = container.format.name
    kind = ACCEPTED_FORMATS.get(fmt, fmt)
    if not container.streams.video:
        if not container.streams and kind in ("MP4/MOV", "Matroska/WebM"):
            raise VideoDecodeError(f"has no frames: the {kind} file holds no track")
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoDecodeError(f"not a video: no video stream (streams found: {', '.join(kinds)})")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None:
        tag = _codec_tag(inp, fmt)
        named = f"codec tag {tag!r}" if tag else "codec"
        raise VideoDecodeError(f"unsupported codec: the {kind} video stream's {named} is unknown to FFmpeg")
    if ctx.name not in ACCEPTED_CODECS:
        raise VideoDecodeError(
            f"unsupported codec {ctx.name!r} ({ctx.codec.long_name}) in the {kind} file; accepted: "
            f"{', '.join(sorted(ACCEPTED_CODECS))}"
        )
    w, h = ctx.width, ctx.height
    if w <= 0 or h <= 0:
        raise VideoDecodeError(f"truncated or corrupt: the video stream has no frame size ({w}x{h})")
    if w * h > limits.max_frame_pixels:
        raise VideoDecodeError(
            f"too large: frames of {w}x{h} pixels exceed max_frame_pixels={limits.max_frame_pixels}"
        )
    declared = int(stream.frames or 0)
    if declared > limits.max_frames:
        raise VideoDecodeError(
            f"too long: the container declares {declared} frames, over max_frames={limits.max_frames}"
        )
    duration = _duration_s(container, stream)
    if duration > limits.max_duration_s:
        raise VideoDecodeError(
            f"too long: the container declares {duration:.1f} s, over max_duration_s={limits.max_duration_s:g}"
        )
    if declared * w * h > limits.max_total_pixels:
        raise VideoDecodeError(
            f"too much to decode: {declared} frames of {w}x{h} pixels exceed "
            f"max_total_pixels={limits.max_total_pixels}"
        )
    return stream


@contextlib.contextmanager
def _open_video(
    inp: _Input, limits: DecodeLimits
) -> Iterator[tuple[av.container.InputContainer, av.video.VideoStream]]:
    """Open ``inp`` (accepted demuxers only, nothing else read) and yield the container and its video stream."""
    _refuse_known_non_video(inp, limits)
    with inp.reader() as fh:
        try:
            container = av.open(
                fh,
                container_options={"format_whitelist": _FORMAT_WHITELIST},
                metadata_errors="replace",
                io_open=_refuse_nested_open,
                buffer_size=_IO_BUFFER,
            )
        except (av.error.FFmpegError, OSError) as err:  # PermissionError: a nested open was refused
            raise _open_error(inp, err) from err
        with container:
            yield container, _check_stream(container, inp, limits)


# --- stream facts --------------------------------------------------------------------------------------------


def _fps(stream: av.video.VideoStream) -> float:
    """The stream's nominal frame rate (0.0 when the container does not say)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0 and math.isfinite(float(rate)):
            return float(rate)
    return 0.0


def _duration_s(container: av.container.InputContainer, stream: av.video.VideoStream) -> float:
    if stream.duration and stream.time_base:
        return max(0.0, float(stream.duration * stream.time_base))
    if container.duration:
        return max(0.0, container.duration / av.time_base)
    return 0.0


def _count_packets(inp: _Input, limits: DecodeLimits) -> int:
    """Count the video packets with data, without decoding (a demux pass; stops quietly at a corrupt tail)."""
    n = 0
    with _open_video(inp, limits) as (container, stream):
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    n += 1
                    if n > limits.max_frames:
                        raise VideoDecodeError(
                            f"too long: the video stream holds more than max_frames={limits.max_frames} frames"
                        )
        except av.error.FFmpegError as err:
            logger.warning("demux stopped after %d packets: %s", n, err)
    return n


def _normalise_rotation(degrees: float) -> int:
    """Display rotation (counter-clockwise degrees) rounded to a multiple of 90 in [0, 360)."""
    if not math.isfinite(degrees):
        return 0
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
        frames: (..., H, W, C) frames as stored in the file (a single frame or a stack; numpy or torch).
        rotation: display rotation in degrees counter-clockwise (0, 90, 180, 270), as
            ``av.VideoFrame.rotation`` reports it: the frames are rotated by that angle.

    Returns:
        (..., H', W', C) contiguous, upright (H' and W' swap for 90 and 270).
    """
    k = (rotation // 90) % 4
    if k == 0:
        return frames
    if type(frames).__module__.startswith("torch"):  # frames on a GPU stay there
        import torch

        return torch.rot90(frames, k=k, dims=(-3, -2)).contiguous()
    return np.ascontiguousarray(np.rot90(frames, k=k, axes=(-3, -2)))


def _display_size(stored_w: int, stored_h: int, rotation: int) -> tuple[int, int]:
    return (stored_h, stored_w) if rotation in (90, 270) else (stored_w, stored_h)


@_decode_errors
def probe(
    source: VideoSource,
    *,
    limits: DecodeLimits | None = None,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    count_packets: bool = False,
    read_rotation: bool = True,
) -> dict[str, Any]:
    """Describe a video without decoding more than its first frame.

    Args:
        source: path, encoded bytes, or a uint8 array holding the file.
        limits: the decode budget (default :data:`mintime.limits.DEFAULT_LIMITS`).
        max_bytes: overrides ``limits.max_bytes``.
        max_pixels: overrides ``limits.max_frame_pixels``.
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
        VideoDecodeError: the input is empty, not an accepted video, has no frames, or exceeds the budget.
        FileNotFoundError: a path that does not exist.
    """
    lim = _limits(limits, max_bytes, max_pixels)
    inp = _input(source, lim.max_bytes)
    return _probe(inp, lim, count_packets=count_packets, read_rotation=read_rotation)


def _probe(
    inp: _Input, limits: DecodeLimits, *, count_packets: bool = False, read_rotation: bool = True
) -> dict[str, Any]:
    with _open_video(inp, limits) as (container, stream):
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
        counted = _count_packets(inp, limits)
        if declared > 0 and counted != declared:
            logger.warning("container declares %d frames but holds %d packets", declared, counted)
        if declared > 0 and counted == 0:
            raise VideoDecodeError(
                f"truncated or corrupt: the container declares {declared} frames but holds no frame data"
            )
        total, source = (min(declared, counted), "demux") if declared > 0 else (counted, "demux")
    if total == 0:
        raise VideoDecodeError("has no frames: the video stream holds no frame")
    if total * info["coded_width"] * info["coded_height"] > limits.max_total_pixels:
        raise VideoDecodeError(
            f"too much to decode: {total} frames of {info['coded_width']}x{info['coded_height']} pixels exceed "
            f"max_total_pixels={limits.max_total_pixels}"
        )
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
    limits: DecodeLimits,
    pixel_cap: int,
    max_side: int | None,
    threads: int,
) -> Iterator[_Frame]:
    """Decode in order and yield every frame, converted to upright RGB only when its index is ``wanted``.

    Frames are converted at the size of :func:`mintime.limits.output_size` (``pixel_cap``, ``max_side``) of the
    first frame. Raises a :class:`VideoDecodeError` as soon as a frame or the running totals exceed ``limits``.
    """
    with _open_video(inp, limits) as (container, stream):
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        index = 0
        work = 0
        size: tuple[int, int] | None = None
        rotation = 0
        for packet in container.demux(stream):
            for frame in stream.decode(packet):
                pixels = frame.width * frame.height
                if pixels > limits.max_frame_pixels:
                    raise VideoDecodeError(
                        f"too large: frame {index} is {frame.width}x{frame.height} pixels, over "
                        f"max_frame_pixels={limits.max_frame_pixels} (the stream changes size)"
                    )
                work += pixels
                if index >= limits.max_frames or work > limits.max_total_pixels:
                    raise VideoDecodeError(
                        f"too long: decoding passed max_frames={limits.max_frames} frames or "
                        f"max_total_pixels={limits.max_total_pixels} pixels at frame {index}"
                    )
                if size is None:
                    rotation = _normalise_rotation(frame.rotation)
                    size = output_size(frame.width, frame.height, pixel_cap, max_side)
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
    inp: _Input,
    wanted: set[int],
    *,
    to_end: bool,
    limits: DecodeLimits,
    pixel_cap: int,
    max_side: int | None,
    threads: int,
) -> _Pass:
    frames: dict[int, np.ndarray] = {}
    decoded, rotation, error = 0, 0, None
    first_time: float | None = None
    last: _Frame | None = None
    gen = _decode_pass(
        inp,
        wanted,
        stop_after=None if to_end else max(wanted),
        limits=limits,
        pixel_cap=pixel_cap,
        max_side=max_side,
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
        error = _ffmpeg_message(err)
    span = 0.0
    if last is not None and first_time is not None and last.time is not None:
        span = (last.end if last.end is not None else last.time) - first_time
    return _Pass(frames=frames, decoded=decoded, error=error, rotation=rotation, span_s=max(span, 0.0))


@_decode_errors
def decode_sampled(
    source: VideoSource,
    num_frames: int = DEFAULT_NUM_FRAMES,
    *,
    limits: DecodeLimits | None = None,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    max_side: int | None = None,
    threads: int = 0,
) -> DecodedClip:
    """Decode ``num_frames`` frames spread uniformly over a video (see :func:`sample_frame_indices`).

    Args:
        source: path, encoded bytes, or a uint8 array holding the file (any shape; a Triton ``TYPE_UINT8``
            tensor with its batch dimension is fine).
        num_frames: frames wanted ``T``; a shorter clip gives all its frames.
        limits: the decode budget (default :data:`mintime.limits.DEFAULT_LIMITS`); the frames are scaled to
            at most ``limits.frame_pixel_cap(num_frames)`` pixels each.
        max_bytes: overrides ``limits.max_bytes``.
        max_pixels: overrides ``limits.max_frame_pixels`` (checked before decoding and on every frame).
        max_side: also downscale frames so that their longer side is at most this (None: no side limit).
        threads: decoder threads (0: FFmpeg's choice).

    Returns:
        The sampled clip: frames (T', H, W, 3) uint8 RGB upright, indices (T',) int64.

    Raises:
        VideoDecodeError: empty, not an accepted video, no frames, no decodable frame, or over the budget.
        FileNotFoundError: a path that does not exist.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    lim = _limits(limits, max_bytes, max_pixels)
    inp = _input(source, lim.max_bytes)
    info = _probe(inp, lim, read_rotation=False)
    declared = info["total_frames"]
    wanted = sample_frame_indices(declared, num_frames)
    decode = functools.partial(
        _collect,
        inp,
        limits=lim,
        pixel_cap=lim.frame_pixel_cap(num_frames),
        max_side=max_side,
        threads=threads,
    )
    first = decode(set(wanted.tolist()), to_end=True)
    total = first.decoded
    if total == 0:
        why = f" (FFmpeg: {first.error})" if first.error else ""
        raise VideoDecodeError(f"truncated or corrupt: no decodable frame in the video stream{why}")
    truncated = first.error is not None or total < declared
    warnings: list[str] = []
    if total < declared:
        warnings.append(
            f"only {total} of the {declared} frames the container declares decoded (truncated or corrupt file): "
            "the result rests on those"
        )
    if first.error is not None:
        logger.warning("decode error after %d frames, keeping what decoded: %s", total, first.error)
        if total >= declared:
            warnings.append(f"decoding stopped with an error after {total} frames: {first.error}")
    frames = first.frames
    if total != declared:
        logger.warning("the stream decoded to %d frames, %d expected: resampling indices", total, declared)
        wanted = sample_frame_indices(total, num_frames)
        missing = set(wanted.tolist()) - frames.keys()
        if missing:
            second = decode(missing, to_end=False)
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
        warnings=tuple(warnings),
    )


def iter_frames(
    source: VideoSource,
    *,
    limits: DecodeLimits | None = None,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    max_side: int | None = None,
    threads: int = 0,
) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame of a video, in order (for writing an annotated copy).

    Frames are scaled like the sampled frames of :func:`decode_sampled` with up to 32 frames: at most
    ``limits.max_output_pixels`` pixels (so boxes found on sampled frames fit). A decode error after at least
    one frame ends the iteration with a warning (as :func:`decode_sampled` keeps partial clips); before any
    frame it raises.

    Args:
        source: path, encoded bytes, or a uint8 array holding the file.
        limits: the decode budget (default :data:`mintime.limits.DEFAULT_LIMITS`).
        max_bytes: overrides ``limits.max_bytes``.
        max_pixels: overrides ``limits.max_frame_pixels``.
        max_side: also downscale so that the longer side is at most this.
        threads: decoder threads (0: FFmpeg's choice).

    Yields:
        ``(index, frame)`` with frame (H, W, 3) uint8 RGB, upright.

    Raises:
        VideoDecodeError: as :func:`decode_sampled`.
    """
    lim = _limits(limits, max_bytes, max_pixels)
    inp = _input(source, lim.max_bytes)
    count = 0
    gen = _decode_pass(
        inp,
        None,
        stop_after=None,
        limits=lim,
        pixel_cap=lim.max_output_pixels,
        max_side=max_side,
        threads=threads,
    )
    try:
        for frame in gen:
            count += 1
            yield frame.index, frame.rgb
    except av.error.FFmpegError as err:
        if count == 0:
            raise VideoDecodeError(
                f"truncated or corrupt: no decodable frame in the video stream (FFmpeg: {_ffmpeg_message(err)})"
            ) from err
        logger.warning("decode error after %d frames, stopping: %s", count, err)
        return
    except UnicodeError as err:
        raise VideoDecodeError(f"cannot decode the video: unreadable text in the container ({err})") from err
    if count == 0:
        raise VideoDecodeError("has no frames: the video stream holds no frame")
