"""Small synthetic media for tests: clips with a frame-index code drawn in, transcoding, rotation metadata.

Everything here uses PyAV (FFmpeg) and writes real, decodable files, so tests need no committed footage.
By default each frame carries its own index as a row of :data:`CODE_BITS` black/white cells in its top half
(:func:`index_pattern`); :func:`read_index_code` reads it back from a decoded frame, which lets a test check
*which* frame a decoder returned, even through lossy codecs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "CODE_BITS",
    "CODECS",
    "index_pattern",
    "read_index_code",
    "make_clip",
    "transcode",
]

logger = logging.getLogger(__name__)

#: Number of bits of the frame-index code drawn by :func:`index_pattern` (clips up to 1024 frames).
CODE_BITS = 10

#: Encoder name -> (pixel format, default encoder options). Containers follow the file extension.
CODECS: dict[str, tuple[str, dict[str, str]]] = {
    "libx264": ("yuv420p", {"crf": "12", "preset": "veryfast"}),
    "libvpx-vp9": ("yuv420p", {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
    "libvpx": ("yuv420p", {"crf": "4", "b": "2M", "deadline": "realtime", "cpu-used": "8"}),
    "mjpeg": ("yuvj420p", {"q:v": "2"}),
    "mpeg4": ("yuv420p", {"q:v": "2"}),
}


def _cell_edges(width: int) -> np.ndarray:
    return np.linspace(0, width, CODE_BITS + 1).round().astype(int)


def index_pattern(index: int, width: int, height: int) -> np.ndarray:
    """Draw one test frame that encodes ``index``.

    Top half: :data:`CODE_BITS` cells, white for a 1 bit (most significant bit left), black for a 0.
    Bottom half: a colour that changes with the index (red ramp, green/blue constants) over a vertical ramp.

    Args:
        index: frame index to encode, ``0 <= index < 2**CODE_BITS``.
        width: frame width in pixels (at least ``4 * CODE_BITS``).
        height: frame height in pixels (at least 8).

    Returns:
        (height, width, 3) uint8 RGB.
    """
    if not 0 <= index < 2**CODE_BITS:
        raise ValueError(f"index {index} does not fit in {CODE_BITS} bits")
    if width < 4 * CODE_BITS or height < 8:
        raise ValueError(f"frame {width}x{height} too small for the index code (min {4 * CODE_BITS}x8)")
    img = np.zeros((height, width, 3), np.uint8)
    edges = _cell_edges(width)
    top = height // 2
    for b in range(CODE_BITS):
        if (index >> (CODE_BITS - 1 - b)) & 1:
            img[:top, edges[b] : edges[b + 1]] = 255
    ramp = np.linspace(40, 215, height - top, dtype=np.float32)[:, None]
    img[top:, :, 0] = (index * 37) % 256
    img[top:, :, 1] = ramp.astype(np.uint8)
    img[top:, :, 2] = 255 - ramp.astype(np.uint8)
    return img


def read_index_code(frame: np.ndarray) -> int:
    """Read back the index drawn by :func:`index_pattern`.

    Args:
        frame: (H, W, 3) uint8 RGB, as decoded (lossy codecs are fine).

    Returns:
        The encoded frame index.
    """
    h, w = frame.shape[:2]
    edges = _cell_edges(w)
    band = frame[h // 8 : (3 * h) // 8].astype(np.float32).mean(axis=2)
    value = 0
    for b in range(CODE_BITS):
        lo, hi = edges[b], edges[b + 1]
        pad = max(1, (hi - lo) // 4)
        bit = band[:, lo + pad : hi - pad].mean() > 127.5
        value = (value << 1) | int(bit)
    return value


def make_clip(
    path: str | os.PathLike,
    *,
    frames: int = 16,
    size: tuple[int, int] = (96, 64),
    fps: float = 25.0,
    codec: str = "libx264",
    draw: Callable[[int], np.ndarray] | None = None,
    timestamps: Sequence[float] | None = None,
    rotation: int = 0,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write a small synthetic video.

    Args:
        path: output file; the extension picks the container (``.mp4``, ``.mkv``, ``.webm``, ``.avi``).
        frames: number of frames.
        size: (width, height) of the *stored* frames (even numbers for 4:2:0 codecs).
        fps: nominal frame rate (the stream's rate; with ``timestamps`` only the advertised one).
        codec: encoder, one of :data:`CODECS`.
        draw: ``draw(i) -> (height, width, 3) uint8 RGB`` for frame ``i``; default :func:`index_pattern`.
        timestamps: presentation time of each frame in seconds (strictly increasing) to make a variable
            frame rate clip; default ``i / fps``.
        rotation: display rotation written as container side data (degrees counter-clockwise, as
            ``VideoFrame.rotation`` reads it back). The pixels are stored as drawn.
        options: encoder options overriding the defaults of :data:`CODECS`.
        container_options: muxer options, e.g. ``{"movflags": "faststart"}`` (MP4 index before the data).

    Returns:
        The path written.
    """
    path = Path(path)
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {sorted(CODECS)}")
    width, height = size
    draw = draw or (lambda i: index_pattern(i, width, height))
    if timestamps is not None and len(timestamps) != frames:
        raise ValueError(f"{len(timestamps)} timestamps for {frames} frames")
    pix_fmt, default_opts = CODECS[codec]
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {**default_opts, **(options or {})}
        if timestamps is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            img = np.ascontiguousarray(draw(i), dtype=np.uint8)
            if img.shape != (height, width, 3):
                raise ValueError(f"draw({i}) returned {img.shape}, expected {(height, width, 3)}")
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if timestamps is not None:
                frame.pts = round(timestamps[i] * 1000)
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = i
                frame.time_base = 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def transcode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    codec: str = "libvpx-vp9",
    *,
    max_frames: int | None = None,
    size: tuple[int, int] | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Re-encode the first video stream of ``src`` with another codec, keeping timestamps and rotation.

    Args:
        src: input video.
        dst: output file (extension picks the container; ``.webm``/``.mkv`` for VP8/VP9, ``.avi``/``.mkv``
            for MJPEG).
        codec: encoder, one of :data:`CODECS`.
        max_frames: stop after this many frames (short test clips from long footage).
        size: (width, height) to scale to; default keep the stored size.
        options: encoder options overriding the defaults of :data:`CODECS`.

    Returns:
        The path written.
    """
    dst = Path(dst)
    pix_fmt, default_opts = CODECS[codec]
    with av.open(str(src)) as inp, av.open(str(dst), mode="w") as out:
        sin = inp.streams.video[0]
        rate = sin.average_rate or sin.guessed_rate or Fraction(25)
        stream = out.add_stream(codec, rate=rate)
        width, height = size or (sin.codec_context.width, sin.codec_context.height)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {**default_opts, **(options or {})}
        stream.codec_context.time_base = sin.time_base
        rotation_set = False
        for n, frame in enumerate(inp.decode(sin)):
            if max_frames is not None and n >= max_frames:
                break
            if not rotation_set:
                if frame.rotation:
                    stream.set_display_rotation(frame.rotation)
                rotation_set = True
            img = frame.reformat(width=width, height=height, format=pix_fmt)
            img.pts, img.time_base = frame.pts, frame.time_base
            out.mux(stream.encode(img))
        out.mux(stream.encode(None))
    return dst


def flat_clip(
    path: str | os.PathLike, size: tuple[int, int], frames: int, codec: str = "libx264", value: int = 100
) -> Path:
    """A clip of flat grey frames: a few KB whatever the frame size (the shape of a decompression bomb).

    Args:
        path: output file (its suffix picks the container).
        size: (width, height) in pixels.
        frames: number of frames.
        codec: ``libx264`` (CRF 51, ultrafast), ``mjpeg`` or any PyAV encoder.
        value: the grey level of every pixel.
    """
    opts = {"preset": "ultrafast", "crf": "51"} if codec == "libx264" else {}
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25, options=opts)
        s.width, s.height = size
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        img = np.full((size[1], size[0], 3), value, np.uint8)
        for _ in range(frames):
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return Path(path)
