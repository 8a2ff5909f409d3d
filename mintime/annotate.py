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
    "wrap_text",
    "frame_layout",
    "draw_frame",
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


def text_scale(frame_height: int, frame_width: int | None = None) -> float:
    """OpenCV font scale for labels on a frame of this size: 0.6 at 720 p, never below 0.4. A narrow (portrait)
    frame counts as the landscape frame of its width (its width x 9/16), so text that fits 1280 px fits it."""
    size = frame_height if frame_width is None else min(frame_height, frame_width * 9 / 16)
    return max(0.4, 0.6 * size / 720)


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


def _ink_for(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white text, whichever reads better on ``colour`` (relative luminance)."""
    r, g, b = colour
    return (0, 0, 0) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else (255, 255, 255)


Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (half-open pixels)


def _thickness(scale: float) -> int:
    return max(1, int(round(scale * 2)))


def _panel_size(text: str, scale: float) -> tuple[int, int]:
    """(width, height) of the filled panel that :func:`_text_on_panel` draws for ``text``."""
    import cv2

    (tw, th), base = cv2.getTextSize(text, _FONT, scale, _thickness(scale))
    pad = max(2, int(round(th * 0.35)))
    return tw + 2 * pad, th + base + 2 * pad


def _text_on_panel(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float,
    *,
    fg: tuple[int, int, int],
    bg: tuple[int, int, int],
    alpha: float = 1.0,
) -> Rect:
    """Draw ``text`` with its top-left corner at ``org`` (kept inside the frame) on a filled panel (blended by
    ``alpha``); returns the panel's rectangle. ``img`` is (H, W, 3) uint8 RGB, changed in place."""
    import cv2

    thickness = _thickness(scale)
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
    return x0, y0, x1, y1


def wrap_text(text: str, scale: float, max_width: int) -> list[str]:
    """``text`` cut at spaces into lines whose panels are at most ``max_width`` pixels wide (a single word wider
    than that keeps its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _panel_size(f"{lines[-1]} {word}", scale)[0] <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(x: int, y: int, size: tuple[int, int], frame: tuple[int, int]) -> Rect:
    """The rectangle of a panel of ``size`` at ``(x, y)``, moved inside a frame of (height, width)."""
    (pw, ph), (h, w) = size, frame
    x, y = max(0, min(x, w - pw)), max(0, min(y, h - ph))
    return x, y, x + pw, y + ph


def frame_layout(
    frame: tuple[int, int],
    boxes: Sequence[tuple[np.ndarray, dict[str, Any]]],
    headline: str,
    notes: Sequence[str] = (),
) -> tuple[list[tuple[str, float, Rect]], list[tuple[str, float, Rect]]]:
    """Where the text of one frame goes: (banner lines, identity labels), each ``(text, scale, rectangle)``.

    The banner (the verdict, then the notes) sits at the top left, each line cut to the frame's width. Each label
    goes above its box, else below it, else inside its top edge, else the nearest free place down or up: never
    over the banner or over another label (crowds), always inside the frame.

    Args:
        frame: (height, width) in pixels.
        boxes: (box [x1, y1, x2, y2], identity JSON) per visible identity.
        headline, notes: the banner's lines.
    """
    h, w = frame
    scale = text_scale(h, w)
    margin = max(4, int(round(h / 100)))
    banner: list[tuple[str, float, Rect]] = []
    y = margin
    for text, s in [(headline, scale * 1.4), *((n, scale) for n in notes)]:
        for part in wrap_text(text, s, w - 2 * margin):
            rect = _inside(margin, y, _panel_size(part, s), frame)
            banner.append((part, s, rect))
            y = rect[3]
    taken = [rect for _, _, rect in banner]
    labels: list[tuple[str, float, Rect]] = []
    for box, ident in boxes:
        text = label_text(ident)
        size = _panel_size(text, scale)
        x1, y1, _, y2 = (int(round(v)) for v in box)
        tries = [y1 - size[1], y2, y1]  # above, below, inside the top edge
        step = max(1, size[1] // 2)
        tries += [*range(y1, h, step), *range(y1, -1, -step)]  # then further down, then further up
        rect = _inside(x1, tries[0], size, frame)  # no free place at all: above the box, as before
        for t in tries:
            candidate = _inside(x1, t, size, frame)
            if not any(_overlaps(candidate, other) for other in taken):
                rect = candidate
                break
        labels.append((text, scale, rect))
        taken.append(rect)
    return banner, labels


def draw_frame(
    img: np.ndarray,
    boxes: Sequence[tuple[np.ndarray, dict[str, Any]]],
    headline: str,
    notes: Sequence[str] = (),
) -> np.ndarray:
    """Annotate one frame in place: the boxes, then the banner, then the labels (:func:`frame_layout`).

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
    line = max(2, int(round(h / 300)))
    for box, ident in boxes:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        width = line if ident.get("fake_score") is not None else 1
        cv2.rectangle(img, (x1, y1), (x2, y2), identity_colour(ident["id"]), width)
    banner, labels = frame_layout(img.shape[:2], boxes, headline, notes)
    for text, s, rect in banner:
        _text_on_panel(img, text, rect[:2], s, fg=(255, 255, 255), bg=_PANEL, alpha=_PANEL_ALPHA)
    for (text, s, rect), (_, ident) in zip(labels, boxes, strict=True):
        colour = identity_colour(ident["id"])
        _text_on_panel(img, text, rect[:2], s, fg=_ink_for(colour), bg=colour)
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
