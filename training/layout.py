"""The face-crop layout shared by ``mintime preprocess``, ``mintime synth`` and the training dataset.

One folder per video, named after the video file (extension included, as the original's ``.../video.mp4/``
folders), keeping the input's relative sub-folders::

    <root>/<relative video path>/            e.g.  faces/clips/a.mp4/
        boxes.json                           video size, sampled frames, every detection, identities
        0/<frame>_<face>.png                 identity 0 = largest mean face size
        1/<frame>_<face>.png                 identity 1, ...

``<frame>`` is the frame index in the video file, ``<face>`` the face's index among that frame's detections
(0 = largest), as the original's ``extract_crops.py`` names them. Crops are the square 1/3-margin crops of
:mod:`mintime.faces.crops`, saved as BGR PNG at their original size (not resized). The original also left
"discarded" faces (in no identity) as loose files in the video folder; faces in no identity are not written here
(they are still listed in ``boxes.json``).

``boxes.json`` (``format`` = :data:`FORMAT`) replaces the original's separate per-video detection JSON and its
need to re-open the video for its size: ``video`` = {fps, width, height, total_frames, sampled_frames},
``status`` (``ok`` / ``no_face``), ``detections`` = {frame: [[x1, y1, x2, y2, score], ...]} (full-resolution
pixels), ``identities`` = [{id, faces: [{frame, face, box, crop, file}]}]; optional ``labels`` (synthetic data:
per-identity manipulation labels).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mintime.slots import FaceRecord

__all__ = [
    "FORMAT",
    "BOXES_JSON",
    "face_file_name",
    "parse_face_file_name",
    "write_boxes_json",
    "read_boxes_json",
    "png_size",
    "VideoFaces",
    "scan_video_folder",
    "identity_folders",
    "video_folder_name",
]

logger = logging.getLogger(__name__)

FORMAT = "mintime.faces.v1"
BOXES_JSON = "boxes.json"
_FACE_RE = re.compile(r"^(\d+)_(\d+)\.png$")


def face_file_name(frame: int, face: int) -> str:
    """``"<frame>_<face>.png"``."""
    return f"{int(frame)}_{int(face)}.png"


def parse_face_file_name(name: str) -> tuple[int, int] | None:
    """``"12_0.png"`` → (12, 0); None for any other name."""
    m = _FACE_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def video_folder_name(video: str | Path, root: str | Path | None = None) -> str:
    """Relative folder of a video in the layout: its path relative to ``root`` (or its file name), posix style."""
    video = Path(video)
    if root is not None:
        try:
            return video.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return video.name


def write_boxes_json(folder: str | Path, data: dict[str, Any]) -> Path:
    """Write ``boxes.json`` into ``folder`` (``format`` added)."""
    path = Path(folder) / BOXES_JSON
    path.write_text(json.dumps({"format": FORMAT, **data}, separators=(",", ":")))
    return path


def read_boxes_json(folder: str | Path) -> dict[str, Any] | None:
    """The folder's ``boxes.json`` as a dict, or None when absent."""
    path = Path(folder) / BOXES_JSON
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG from its IHDR chunk (24 bytes read, no decoding)."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def identity_folders(folder: str | Path) -> list[Path]:
    """Identity sub-folders of a video folder (numeric names), sorted numerically."""
    folder = Path(folder)
    subs = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    return sorted(subs, key=lambda p: int(p.name))


@dataclass
class VideoFaces:
    """The faces of one video folder.

    Attributes:
        identities: per identity folder (numeric order), its faces as :class:`FaceRecord` (``key`` = the PNG
            path relative to the video folder, e.g. ``"0/12_0.png"``), sorted by frame.
        frame_size: (W, H) of the video.
        labels: optional per-identity labels from ``boxes.json`` (synthetic data), else None.
    """

    identities: list[list[FaceRecord]]
    frame_size: tuple[int, int]
    labels: list[int] | None = None

    @property
    def num_faces(self) -> int:
        return sum(len(i) for i in self.identities)

    def files(self) -> list[str]:
        """All face files (relative), identity by identity."""
        return [str(f.key) for ident in self.identities for f in ident]


def scan_video_folder(folder: str | Path) -> VideoFaces:
    """Read a video folder of the layout.

    Crop sizes come from ``boxes.json`` (``crop`` boxes) when present, else from the PNG headers. The frame size
    must be in ``boxes.json`` (``video.width`` / ``video.height``).

    Raises:
        FileNotFoundError: the folder or its ``boxes.json`` is missing.
    """
    folder = Path(folder)
    meta = read_boxes_json(folder)
    if meta is None:
        raise FileNotFoundError(f"{folder}: no {BOXES_JSON} (write the layout with `mintime preprocess`)")
    video = meta["video"]
    frame_size = (int(video["width"]), int(video["height"]))
    crops: dict[str, tuple[int, int]] = {}
    for ident in meta.get("identities", []):
        for face in ident.get("faces", []):
            if "file" in face and "crop" in face:
                x0, y0, x1, y1 = face["crop"]
                crops[face["file"]] = (int(y1 - y0), int(x1 - x0))
    identities: list[list[FaceRecord]] = []
    for sub in identity_folders(folder):
        records = []
        for name in os.listdir(sub):
            parsed = parse_face_file_name(name)
            if parsed is None:
                continue
            rel = f"{sub.name}/{name}"
            if rel in crops:
                crop_h, crop_w = crops[rel]
            else:
                crop_w, crop_h = png_size(sub / name)
            records.append(FaceRecord(frame_index=parsed[0], crop_h=crop_h, crop_w=crop_w, key=rel))
        records.sort(key=lambda r: (r.frame_index, str(r.key)))
        identities.append(records)
    labels = meta.get("labels", {}).get("identities") if isinstance(meta.get("labels"), dict) else None
    return VideoFaces(identities=identities, frame_size=frame_size, labels=labels)
