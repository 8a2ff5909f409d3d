"""Annotated output video: every frame, one box per identity in that identity's own colour, with its scores.

Faces are detected on the sampled frames only; on the frames in between, an identity's box is interpolated
linearly between its two nearest detections (and held for up to half a sampling step past its first/last one),
so every frame of the output carries the boxes of the identities visible around it.

What is drawn: a box and a filled label per identity (``id 0: fake score 0.99, attention 0.73``; the scores are
the explanation's attribution scores in [0, 1], not probabilities, so they are not shown as percentages), and a
headline with the video's verdict (``FAKE: P(fake) = 0.994``) plus optional note lines (for example which model
answered), on a dark panel so they stay readable on bright scenes. Line widths and text sizes follow the frame
height. The file is written to a temporary name next to the target and renamed at the end, so a failure never
leaves a half-written video; the caller gets the path back (and prints it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "write_annotated_video",
    "identity_tracks",
    "box_at",
    "identity_colour",
    "label_text",
    "headline_text",
    "text_scale",
    "PALETTE",
]

logger = logging.getLogger(__name__)

#: Identity colours (RGB), by identity id: distinct hues that stay visible on skin, sky and dark scenes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 114, 255),  # blue
    (255, 140, 0),  # orange
    (0, 200, 120),  # green
    (230, 30, 140),  # magenta
    (150, 90, 255),  # violet
    (0, 200, 230),  # cyan
    (240, 220, 0),  # yellow
    (170, 110, 60),  # brown
)
_PANEL = (0, 0, 0)
_PANEL_ALPHA = 0.75
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def identity_colour(identity_id: int) -> tuple[int, int, int]:
    """The RGB colour of an identity (the same id keeps its colour in every frame and every video)."""
    return PALETTE[int(identity_id) % len(PALETTE)]


def text_scale(frame_height: int) -> float:
    """OpenCV font scale for labels on a frame of this height (0.6 at 720 p, never below 0.4)."""
    return max(0.4, 0.6 * frame_height / 720)


def label_text(ident: dict[str, Any]) -> str:
    """``"id 0: fake score 0.99, attention 0.73"``, or ``"id 2: not scored"`` for an identity outside the slots."""
    score = ident.get("fake_score")
    if score is None:
        return f"id {ident['id']}: not scored"
    text = f"id {ident['id']}: fake score {score:.2f}"
    if ident.get("attention") is not None:
        text += f", attention {ident['attention']:.2f}"
    return text


def headline_text(result: dict[str, Any]) -> str:
    """``"FAKE: P(fake) = 0.994"``, or ``"no face found"``."""
    p = result.get("fake_probability")
    if p is None:
        return "no face found"
    return f"{str(result.get('label', '?')).upper()}: P(fake) = {p:.3f}"


def result_notes(result: dict[str, Any]) -> list[str]:
    """The lines every annotated video carries under its headline: the model that answered (and the demo
    weights' caveat) and the result's decode warnings."""
    notes = []
    model = result.get("model") or {}
    if model:
        notes.append(f"model: {model.get('name')}")
        if model.get("caveat"):
            notes.append(str(model["caveat"]))
    notes += [f"warning: {w}" for w in result.get("warnings") or []]
    return notes


def identity_tracks(result: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """Per identity: (frames (n,) int64 sorted, boxes (n, 4) float32, the identity's JSON)."""
    tracks = []
    for ident in result.get("identities", []):
        faces = sorted(ident["faces"], key=lambda f: f["frame"])
        if not faces:
            continue
        frames = np.array([f["frame"] for f in faces], np.int64)
        boxes = np.array([f["box"] for f in faces], np.float32)
        tracks.append((frames, boxes, ident))
    return tracks


def box_at(frames: np.ndarray, boxes: np.ndarray, t: int, hold: int) -> np.ndarray | None:
    """The box of a track at frame ``t``: exact, interpolated between neighbours, or held ``hold`` frames."""
    j = int(np.searchsorted(frames, t))
    if j < len(frames) and frames[j] == t:
        return boxes[j]
    if 0 < j < len(frames):
        f0, f1 = frames[j - 1], frames[j]
        if f1 - f0 <= 4 * max(hold, 1):
            a = (t - f0) / (f1 - f0)
            return (1 - a) * boxes[j - 1] + a * boxes[j]
    if j > 0 and t - frames[j - 1] <= hold:
        return boxes[j - 1]
    if j < len(frames) and frames[j] - t <= hold:
        return boxes[j]
    return None


def _text_on_panel(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float,
    *,
    fg: tuple[int, int, int],
    bg: tuple[int, int, int],
    alpha: float = 1.0,
) -> int:
    """Draw ``text`` with its top-left corner at ``org`` on a filled panel (blended by ``alpha``); returns the
    panel's height. ``img`` is (H, W, 3) uint8 RGB, changed in place."""
    import cv2

    thickness = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, int(round(th * 0.35)))
    h, w = img.shape[:2]
    x0, y0 = max(0, min(org[0], w - tw - 2 * pad)), max(0, min(org[1], h - th - base - 2 * pad))
    x1, y1 = min(w, x0 + tw + 2 * pad), min(h, y0 + th + base + 2 * pad)
    if alpha >= 1.0:
        img[y0:y1, x0:x1] = bg
    else:
        region = img[y0:y1, x0:x1].astype(np.float32)
        img[y0:y1, x0:x1] = (region * (1 - alpha) + np.asarray(bg, np.float32) * alpha).astype(np.uint8)
    cv2.putText(img, text, (x0 + pad, y0 + pad + th), _FONT, scale, fg, thickness, cv2.LINE_AA)
    return y1 - y0


def _ink_for(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white text, whichever reads better on ``colour`` (relative luminance)."""
    r, g, b = colour
    return (0, 0, 0) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else (255, 255, 255)


def draw_frame(
    img: np.ndarray,
    boxes: Sequence[tuple[np.ndarray, dict[str, Any]]],
    headline: str,
    notes: Sequence[str] = (),
) -> np.ndarray:
    """Annotate one frame in place.

    Args:
        img: (H, W, 3) uint8 RGB, contiguous.
        boxes: (box [x1, y1, x2, y2] in pixels, identity JSON) of the identities visible in this frame.
        headline: the verdict line (top left).
        notes: more lines under the headline.

    Returns:
        ``img``.
    """
    import cv2

    h = img.shape[0]
    scale = text_scale(h)
    line = max(2, int(round(h / 300)))
    for box, ident in boxes:
        colour = identity_colour(ident["id"])
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, line if ident.get("fake_score") is not None else 1)
        text = label_text(ident)
        (_, th), base = cv2.getTextSize(text, _FONT, scale, max(1, int(round(scale * 2))))
        panel_h = th + base + 2 * max(2, int(round(th * 0.35)))
        top = y1 - panel_h if y1 - panel_h >= 0 else y2  # above the box, or below it at the top edge
        _text_on_panel(img, text, (x1, top), scale, fg=_ink_for(colour), bg=colour)
    margin = max(4, int(round(h / 100)))
    y = margin
    y += _text_on_panel(
        img, headline, (margin, y), scale * 1.4, fg=(255, 255, 255), bg=_PANEL, alpha=_PANEL_ALPHA
    )
    for note in notes:
        y += _text_on_panel(img, note, (margin, y), scale, fg=(255, 255, 255), bg=_PANEL, alpha=_PANEL_ALPHA)
    return img


def write_annotated_video(
    source: str | os.PathLike,
    result: dict[str, Any],
    target: str | os.PathLike,
    *,
    notes: Sequence[str] = (),
) -> Path:
    """Write ``target`` (H.264 MP4): every frame of ``source`` with identity boxes, scores and the verdict.

    Args:
        source: the video that was analysed.
        result: its result dict (:func:`mintime.explain.render_result`).
        target: output path (``.mp4``).
        notes: extra lines under the headline, after :func:`result_notes` (the model and its caveat, the
            decode warnings).

    Returns:
        The path written (``target``), for the caller to print.
    """
    import av

    from mintime.video import iter_frames, probe

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    info = probe(source)
    fps = float(info.get("fps") or 25.0)
    sampled = result.get("clip", {}).get("sampled_frames") or [0]
    step = max(1, int(np.median(np.diff(sampled)))) if len(sampled) > 1 else 1
    hold = max(1, step // 2)
    tracks = identity_tracks(result)
    headline = headline_text(result)
    notes = [*result_notes(result), *notes]

    tmp = target.with_name(f".{target.name}.part")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = None
            for index, frame in iter_frames(source):
                if stream is None:
                    h, w = frame.shape[:2]
                    stream = out.add_stream("libx264", rate=round(fps) or 25)
                    stream.width, stream.height = w - w % 2, h - h % 2
                    stream.pix_fmt = "yuv420p"
                img = np.ascontiguousarray(frame[: stream.height, : stream.width])
                visible = []
                for frames, boxes, ident in tracks:
                    box = box_at(frames, boxes, index, hold)
                    if box is not None:
                        visible.append((box, ident))
                draw_frame(img, visible, headline, notes)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            if stream is None:
                raise ValueError(f"{source}: no frame to annotate")
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("annotated video written to %s", target)
    return target
