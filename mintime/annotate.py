"""Annotated output video: every frame, one box per identity coloured by its verdict.

Faces are detected on the sampled frames only; on the frames in between, an identity's box is interpolated
linearly between its two nearest detections (and held for up to half a sampling step past its first/last one),
so every frame of the output carries the boxes of the identities visible around it. The file is written to a
temporary name next to the target and renamed at the end, so a failure never leaves a half-written video.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_annotated_video", "identity_tracks", "box_at"]

logger = logging.getLogger(__name__)

GREEN = (40, 200, 40)
RED = (230, 40, 40)
GREY = (160, 160, 160)


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


def _label(ident: dict[str, Any]) -> tuple[str, tuple[int, int, int]]:
    score = ident.get("fake_score")
    if score is None:
        return f"id {ident['id']}: not scored", GREY
    if score > 0.5:
        return f"id {ident['id']}: Fake {100 * score:.1f}%", RED
    return f"id {ident['id']}: Pristine {100 * (1 - score):.1f}%", GREEN


def write_annotated_video(
    source: str | os.PathLike, result: dict[str, Any], target: str | os.PathLike
) -> Path:
    """Write ``target`` (H.264 MP4): every frame of ``source`` with identity boxes and scores.

    Args:
        source: the video that was analysed.
        result: its result dict (:func:`mintime.explain.render_result`).
        target: output path (``.mp4``).
    """
    import av
    import cv2

    from mintime.video import iter_frames, probe

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    info = probe(source)
    fps = float(info.get("fps") or 25.0)
    sampled = result.get("clip", {}).get("sampled_frames") or [0]
    step = max(1, int(np.median(np.diff(sampled)))) if len(sampled) > 1 else 1
    hold = max(1, step // 2)
    tracks = identity_tracks(result)
    p = result.get("fake_probability")
    headline = "no face found" if p is None else f"{result.get('label', '?')}: P(fake) = {p:.3f}"

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
                for frames, boxes, ident in tracks:
                    box = box_at(frames, boxes, index, hold)
                    if box is None:
                        continue
                    text, colour = _label(ident)
                    x1, y1, x2, y2 = (int(round(v)) for v in box)
                    cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2)
                    cv2.putText(img, text, (x1, max(15, y1 - 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2)
                cv2.putText(img, headline, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
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
