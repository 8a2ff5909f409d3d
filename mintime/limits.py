"""The decode budget: one set of limits for every place that decodes a video or accepts one.

Used by ``mintime predict`` (:func:`mintime.video.decode_sampled`), the Python-backend ``video_decode`` step
(its config parameters override the defaults by field name), the DALI decode helper (it reads the same
object) and the gRPC client (it refuses to send more than :attr:`DecodeLimits.max_bytes`). Standard library
only: the client and the Triton Python models import it without torch.

What each limit bounds:

* ``max_bytes``: the encoded input (checked before anything is read or decoded).
* ``max_duration_s``, ``max_frames`` and ``max_total_pixels``: the clip's length and the decoding work
  (frames x coded pixels), from the container's header before decoding, and ``max_frames`` and
  ``max_total_pixels`` again while decoding (a header can lie): they bound decode *time*.
* ``max_frame_pixels``: the coded frame size, from the stream header and again on every decoded frame
  (a stream can change size mid-way): it bounds the decoder's own buffers.
* ``max_output_pixels`` and ``max_clip_pixels``: the frames handed on. **Scaling rule**: every sampled frame
  is scaled on decode (area interpolation, aspect ratio kept, never enlarged) so that its pixel count is at most
  ``min(max_output_pixels, max_clip_pixels // T)``, ``T`` = frames sampled. With the defaults and ``T <= 32``
  that is 1920x1080 = 2.07 MP: 1080p and smaller videos are untouched, 4K is halved. Detection needs no more:
  MTCNN runs on frames scaled by ``detect_scale`` (0.5, so at most 960x540 px) and the crops are 224x224 px.
  The sampled frames of one request then hold at most ``3 * max_clip_pixels`` bytes (199 MB).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DecodeLimits", "DEFAULT_LIMITS", "output_size"]


@dataclass(frozen=True)
class DecodeLimits:
    """Limits on one video: what is accepted, and how far decoded frames are scaled.

    Attributes:
        max_bytes: largest encoded input, bytes (256 MiB).
        max_duration_s: longest clip, seconds (10 minutes).
        max_frames: most frames in a clip (10 minutes at 60 frames/s).
        max_frame_pixels: largest coded frame, width x height (4096x2304: DCI and UHD 4K, portrait too).
        max_total_pixels: most coded pixels decoded per pass over a clip, summed over its frames (10 minutes
            of 1080p at 30 frames/s; 2.5 minutes of 4K).
        max_output_pixels: largest sampled frame handed on (1920x1080).
        max_clip_pixels: budget of output pixels x sampled frames per request (32 frames of 1920x1080).
    """

    max_bytes: int = 256 * 1024**2
    max_duration_s: float = 600.0
    max_frames: int = 36_000
    max_frame_pixels: int = 4096 * 2304
    max_total_pixels: int = 18_000 * 1920 * 1080
    max_output_pixels: int = 1920 * 1080
    max_clip_pixels: int = 32 * 1920 * 1080

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"DecodeLimits.{f.name} must be a positive number, got {value!r}")

    def frame_pixel_cap(self, num_frames: int) -> int:
        """Most pixels of one sampled frame when ``num_frames`` are sampled (the scaling rule above)."""
        return max(1, min(self.max_output_pixels, self.max_clip_pixels // max(1, int(num_frames))))

    def memory_bound_bytes(self, num_frames: int) -> int:
        """Bytes of the sampled RGB frames of one request at most (``3 x T x`` :meth:`frame_pixel_cap`)."""
        return 3 * max(1, int(num_frames)) * self.frame_pixel_cap(num_frames)

    def replace(self, **changes: Any) -> DecodeLimits:
        """A copy with some fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_parameters(cls, params: Mapping[str, str], base: DecodeLimits | None = None) -> DecodeLimits:
        """Limits from string parameters named like the fields (a Triton model config's ``parameters``).

        Unknown keys are ignored; an empty value keeps the default.

        Raises:
            ValueError: a value that is not a positive number.
        """
        base = base or cls()
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            text = str(params.get(f.name, "")).strip()
            if not text:
                continue
            kind = type(getattr(base, f.name))
            try:
                changes[f.name] = kind(float(text)) if kind is int else kind(text)
            except ValueError as exc:
                raise ValueError(f"parameter {f.name!r}: expected a number, got {text!r}") from exc
        return dataclasses.replace(base, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The limits as a plain dict (for logs and the README table)."""
        return dataclasses.asdict(self)


#: The limits every decoder and the client use unless told otherwise.
DEFAULT_LIMITS = DecodeLimits()


def output_size(width: int, height: int, max_pixels: int, max_side: int | None = None) -> tuple[int, int]:
    """The size a ``width`` x ``height`` frame is scaled to: aspect ratio kept, never enlarged.

    First the longer side is brought to at most ``max_side`` (rounded), then the pixel count to at most
    ``max_pixels`` (rounded down, so the bound holds).

    Args:
        width, height: the frame's size in pixels.
        max_pixels: most pixels of the result.
        max_side: also keep the longer side at most this (None: no side limit).

    Returns:
        (width, height), each at least 1.
    """
    w, h = int(width), int(height)
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if w * h > max_pixels:
        scale = math.sqrt(max_pixels / (w * h))
        w, h = max(1, int(w * scale)), max(1, int(h * scale))
    return w, h
