"""``mintime preprocess``: videos → face crops in identity folders (the layout of :mod:`training.layout`).

The stages are the ones ``mintime predict`` runs (:class:`mintime.faces.stage.FaceStage`: decode ``num_frames``
sampled frames → batched MTCNN → square 1/3-margin crops from each face's own frame → identity clustering), so
training sees exactly the crops inference sees. The original ran three scripts (detect on every frame,
crop one frame per second with boxes of another frame, cluster with FaceNet, §5); this is one pass.

Resumable: each video is written into a temporary sibling folder (``.tmp-<name>-<pid>``) that is renamed to its
final name only when complete, so a crash never leaves a half-written video folder; finished folders (with their
``boxes.json``) are skipped, so preprocessing a folder twice does no work the second time. Videos without a face
get a folder with only ``boxes.json`` (status ``no_face``) and are listed in the summary. Parallel over
processes (``--workers``), each with its own detector and embedder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.layout import BOXES_JSON, face_file_name, read_boxes_json, write_boxes_json

__all__ = [
    "VIDEO_SUFFIXES",
    "PreprocessSummary",
    "find_videos",
    "is_done",
    "write_video_faces",
    "process_video",
    "preprocess",
]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}
_TMP_PREFIX = ".tmp-"


@dataclass
class PreprocessSummary:
    """What a run did.

    Attributes:
        total: videos found.
        processed: videos analysed in this run.
        skipped: videos whose folder was already complete (no work done).
        faces_written: crops written in this run.
        no_face: videos (relative names) with no usable face, this run or earlier.
        failed: video → error message (no folder written; retried next run).
        seconds: wall time.
    """

    total: int = 0
    processed: int = 0
    skipped: int = 0
    faces_written: int = 0
    no_face: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_videos(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """Video files and their relative layout names.

    A folder contributes every video under it (recursively), named relative to that folder; a file is named by
    its file name. Duplicate names keep the first.

    Returns:
        Sorted (path, relative name) pairs.
    """
    found: dict[str, Path] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            before = len(found)
            for q in sorted(p.rglob("*")):
                if (
                    q.is_file()
                    and q.suffix.lower() in VIDEO_SUFFIXES
                    and not any(part.startswith(".") for part in q.relative_to(p).parts)
                ):
                    found.setdefault(q.relative_to(p).as_posix(), q)
            if len(found) == before:
                logger.warning("no video files in %s (%s)", p, ", ".join(sorted(VIDEO_SUFFIXES)))
        elif p.is_file():
            found.setdefault(p.name, p)
        else:
            raise FileNotFoundError(f"no such video or folder: {p}")
    return sorted(((path, rel) for rel, path in found.items()), key=lambda t: t[1])


def is_done(out_root: str | Path, rel: str) -> bool:
    """Whether the video's folder is complete (it exists only after the final rename, with ``boxes.json``)."""
    return (Path(out_root) / rel / BOXES_JSON).is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(out_root: str | Path) -> int:
    """Remove temporary folders left by crashed runs (their process is gone). Returns how many."""
    removed = 0
    root = Path(out_root)
    if not root.is_dir():
        return 0
    for tmp in root.rglob(f"{_TMP_PREFIX}*"):
        if not tmp.is_dir():
            continue
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    return removed


def _write_identity_crops(
    video_folder: Path,
    rank: int,
    faces: Sequence[dict[str, Any]],
    frames: np.ndarray,
    pos: dict[int, int],
    size: tuple[int, int],
) -> list[dict[str, Any]]:
    """Write one identity's crops as ``<rank>/<frame>_<face>.png`` (BGR); their ``boxes.json`` entries.

    Args:
        video_folder: the (temporary) video folder.
        rank: identity index (its sub-folder).
        faces: ``frame``, ``face``, ``box`` of each face, and optionally its ``crop`` (the face stage's, else
            cut here from ``frames``).
        frames: (T, H, W, 3) uint8 RGB sampled frames; ``pos`` maps a frame index to its row.
        size: (width, height) of the video.
    """
    import cv2

    from mintime.faces.crops import crop_face, square_crop_box

    folder = video_folder / str(rank)
    folder.mkdir()
    entries = []
    for face in faces:
        frame, k = int(face["frame"]), int(face["face"])
        box = np.asarray(face["box"], np.float32)
        crop = face["crop"] if face.get("crop") is not None else crop_face(frames[pos[frame]], box)
        name = face_file_name(frame, k)
        if not cv2.imwrite(str(folder / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {folder / name}")
        x0, y0, x1, y1 = (int(v) for v in square_crop_box(box, *size))
        entries.append(
            {
                "frame": frame,
                "face": k,
                "box": [round(float(v), 2) for v in box],
                "crop": [x0, y0, x1, y1],
                "file": f"{rank}/{name}",
            }
        )
    return entries


def write_video_faces(
    out_root: str | Path,
    rel: str,
    *,
    frames: np.ndarray,
    frame_indices: Sequence[int],
    video_info: dict[str, Any],
    identities: Sequence[Sequence[dict[str, Any]]],
    detections: dict[int, list[list[float]]],
    status: str = "ok",
    extra: dict[str, Any] | None = None,
) -> tuple[Path, int]:
    """Write one video's folder atomically (temporary sibling, then rename).

    Args:
        out_root: layout root.
        rel: the video's relative name (its folder).
        frames: (T, H, W, 3) uint8 RGB sampled frames.
        frame_indices: (T,) frame index of each sampled frame.
        video_info: ``fps``, ``width``, ``height``, ``total_frames``, ``sampled_frames``.
        identities: per identity in size order, its faces as dicts with ``frame`` (index in the file),
            ``face`` (index among the frame's detections), ``box`` [x1, y1, x2, y2] full-resolution pixels and
            optionally ``crop`` (the face stage's crop, else cut here from ``frames``).
        detections: frame index → [[x1, y1, x2, y2, score], ...] of every detected face.
        status: ``ok`` or ``no_face``.
        extra: more top-level ``boxes.json`` fields (e.g. synthetic labels).

    Returns:
        (final folder, number of crops written).
    """
    final = Path(out_root) / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    pos = {int(f): t for t, f in enumerate(frame_indices)}
    size = (int(video_info["width"]), int(video_info["height"]))
    ident_json = []
    try:
        for rank, faces in enumerate(identities):
            entries = _write_identity_crops(tmp, rank, faces, frames, pos, size)
            ident_json.append({"id": rank, "faces": entries})
        written = sum(len(i["faces"]) for i in ident_json)
        write_boxes_json(
            tmp,
            {
                "status": status,
                "video": video_info,
                "detections": {str(k): v for k, v in sorted(detections.items())},
                "identities": ident_json,
                **(extra or {}),
            },
        )
        if final.exists():  # a concurrent run finished first, or a forced redo
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, written


# --- worker side -------------------------------------------------------------------------------------------------
_ANALYZER = None


def make_face_stage(cfg: Any) -> Any:
    """The face stage every worker runs (:class:`mintime.faces.stage.FaceStage`)."""
    from mintime.faces.stage import FaceStage

    return FaceStage(cfg)


def _init_worker(cfg: Any, threads: int) -> None:
    global _ANALYZER
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    _ANALYZER = make_face_stage(cfg)


def process_video(video: str | Path, rel: str, out_root: str | Path, analyzer: Any = None) -> dict[str, Any]:
    """Analyse one video and write its folder.

    Returns:
        ``{"rel", "status", "faces", "identities"}``.
    """
    from mintime.video import decode_sampled

    analyzer = analyzer if analyzer is not None else _ANALYZER
    if analyzer is None:
        raise RuntimeError(
            "process_video needs a face stage (or call it in a worker initialised by preprocess)"
        )
    clip = decode_sampled(video, analyzer.cfg.num_frames)
    faces = analyzer(clip)
    indices = [int(i) for i in clip.indices]
    detections: dict[int, list[list[float]]] = {
        indices[t]: [
            [round(float(v), 2) for v in b] + [round(float(s), 4)]
            for b, s in zip(det.boxes, det.scores, strict=True)
        ]
        for t, det in enumerate(faces.detections)
        if len(det.boxes)
    }
    identities = [
        [{"frame": f.frame, "face": f.index, "box": f.box.tolist(), "crop": f.crop} for f in ident.faces]
        for ident in faces.identities
    ]
    video_info = {
        "fps": float(clip.fps),
        "width": int(clip.width),
        "height": int(clip.height),
        "total_frames": int(clip.total_frames),
        "sampled_frames": indices,
        "source": str(video),
    }
    status = "ok" if identities else "no_face"
    _, written = write_video_faces(
        out_root,
        rel,
        frames=clip.frames,
        frame_indices=indices,
        video_info=video_info,
        identities=identities,
        detections=detections,
        status=status,
        extra={"reason": faces.reason} if status != "ok" else None,
    )
    return {"rel": rel, "status": status, "faces": written, "identities": len(identities)}


def _run_one(args: tuple[str, str, str]) -> dict[str, Any]:
    video, rel, out_root = args
    try:
        return process_video(video, rel, out_root)
    except Exception as exc:  # reported in the summary; the video is retried on the next run
        # the traceback travels back with the result (a worker process has no logging set up)
        return {
            "rel": rel,
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }


def preprocess(
    inputs: Iterable[str | Path],
    out_root: str | Path,
    *,
    cfg: Any = None,
    workers: int = 1,
    progress: bool = True,
) -> PreprocessSummary:
    """Preprocess videos (files or folders) into ``out_root``; finished videos are skipped.

    Args:
        inputs: video files and/or folders (searched recursively).
        out_root: layout root (created).
        cfg: :class:`mintime.config.PipelineConfig` (default settings when None). ``max_identities`` only limits
            the slots of ``mintime predict``: every identity found is written here.
        workers: parallel processes (1 = in this process).
        progress: show a progress bar.

    Returns:
        The :class:`PreprocessSummary` (also written to ``<out_root>/preprocess_summary.json``).
    """
    from tqdm import tqdm

    from mintime.config import PipelineConfig

    t0 = time.perf_counter()
    cfg = cfg or PipelineConfig()
    out = Path(out_root)
    out.mkdir(parents=True, exist_ok=True)
    stale = clean_stale_tmp(out)
    if stale:
        logger.info("removed %d unfinished folders of earlier runs", stale)
    videos = find_videos(list(inputs))
    summary = PreprocessSummary(total=len(videos))
    todo = []
    for path, rel in videos:
        if is_done(out, rel):
            summary.skipped += 1
            meta = read_boxes_json(out / rel) or {}
            if meta.get("status") == "no_face":
                summary.no_face.append(rel)
        else:
            todo.append((str(path), rel, str(out)))
    bar = tqdm(total=len(todo), unit="video", desc="preprocess", disable=not progress or not todo)

    def account(res: dict[str, Any]) -> None:
        if res["status"] == "error":
            summary.failed[res["rel"]] = res["error"]
            logger.info("%s failed:\n%s", res["rel"], res.get("traceback", "").rstrip())
        else:
            summary.processed += 1
            summary.faces_written += int(res["faces"])
            if res["status"] == "no_face":
                summary.no_face.append(res["rel"])
        bar.update(1)

    if todo and workers <= 1:
        global _ANALYZER
        _ANALYZER = make_face_stage(cfg)
        for item in todo:
            account(_run_one(item))
    elif todo:
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(cfg, threads),
        ) as pool:
            futures = [pool.submit(_run_one, item) for item in todo]
            for fut in as_completed(futures):
                account(fut.result())
    bar.close()
    summary.no_face.sort()
    summary.seconds = time.perf_counter() - t0
    (out / "preprocess_summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary
