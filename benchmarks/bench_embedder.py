"""Identity embedding cost per face: dlib (shape predictor + chip + descriptor) vs device alignment + torch ResNet.

For each shared clip, ``T`` frames are sampled and decoded and MTCNN finds the faces (not timed). Then, on the
same faces (boxes of at least ``--min-side`` pixels), three embedders are timed, each in one call per clip:

* ``dlib``: :class:`mintime.faces.embedder.DlibEmbedder` (today's default): dlib's 5-point shape predictor per
  face, ``get_face_chip`` and dlib's ResNet, one batched ``compute_face_descriptor`` call, on the CPU;
* ``resnet``: :meth:`ResnetEmbedder.descriptors` on the frames tensor with the detector's landmarks: one
  batched alignment (:mod:`mintime.faces.align`) and batched network passes (:mod:`mintime.faces.dlib_resnet`);
* ``resnet+onet``: :meth:`ResnetEmbedder.embed` without landmarks (one O-Net pass over the boxes first).

The same faces' backbone crops are timed too: :func:`mintime.faces.crops.to_model_input` over
:func:`~mintime.faces.crops.crop_face` per face (OpenCV) against one
:func:`mintime.faces.crops_torch.crop_resize_pad`
call on the frames tensor.

The shared images are a sixth source (one frame each, larger faces). Also printed: how far the ``resnet``
descriptors are from dlib's (median / max distance per face) and how many identities
:func:`mintime.faces.identities.cluster_identities` finds with each embedder on each clip, and with the tracklet
path (:func:`mintime.faces.tracklets.identities_from_tracklets`, 4 faces per tracklet, then the same
count, face-share and size filters as ``cluster_identities``).

Usage::

    python benchmarks/bench_embedder.py                       # CPU, 16 frames per clip
    python benchmarks/bench_embedder.py --device cuda --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from mintime.faces import crops
from mintime.faces.crops_torch import crop_resize_pad
from mintime.faces.embedder import DlibEmbedder, ResnetEmbedder
from mintime.faces.identities import cluster_identities
from mintime.faces.mtcnn import MTCNN
from mintime.faces.tracklets import identities_from_tracklets
from mintime.video import decode_sampled

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], np.ndarray], repeats: int, device: torch.device) -> tuple[float, np.ndarray]:
    """Median seconds of ``fn`` over ``repeats`` runs, and its last result."""
    times, out = [], None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def load_sources(num_frames: int) -> list[tuple[str, np.ndarray]]:
    """(name, frames (T, H, W, 3) uint8 RGB) per shared clip, and the shared images (one per frame list)."""
    out = [
        (p.name, decode_sampled(p, num_frames=num_frames).frames)
        for p in sorted((SHARED / "videos").glob("*.mp4"))
    ]
    images = sorted((SHARED / "images").glob("*.jpg"))
    if images:
        out.append(
            ("images (5 stills)", [np.ascontiguousarray(cv2.imread(str(p))[:, :, ::-1]) for p in images])
        )
    return out


def count_identities(labels: np.ndarray, boxes: np.ndarray, frame_ids: np.ndarray) -> int:
    """Identities left by the filters of :func:`cluster_identities` at its defaults (labels -1 ignored).

    At least 2 distinct frames (fewer when the clip has fewer), at least 0.2 x the face count of the largest
    identity, and a mean face size (longer box side) of at least 0.4 x the largest identity's.
    """
    groups = [np.flatnonzero(labels == k) for k in np.unique(labels[labels >= 0])]
    if not groups:
        return 0
    need = max(min(2, len(np.unique(frame_ids))), int(np.ceil(0.2 * max(len(g) for g in groups) - 1e-9)), 1)
    groups = [g for g in groups if len(g) >= need]
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    largest = max((side[g].mean() for g in groups), default=0.0)
    return int(sum(side[g].mean() >= 0.4 * largest for g in groups))


def bench_source(
    name: str,
    frames: np.ndarray | list[np.ndarray],
    detector: MTCNN,
    dlib_emb: DlibEmbedder,
    resnet: ResnetEmbedder,
    min_side: float,
    repeats: int,
) -> dict | None:
    """Detects the faces of one source (not timed), then times the three embedders on them."""
    device = resnet.device
    frames_list = list(frames)
    if isinstance(frames, list):  # stills of different sizes
        dets = [detector.detect(f[None])[0] for f in frames_list]
    else:
        dets = detector.detect(frames)
    pos, boxes, points = [], [], []
    for t, d in enumerate(dets):
        for box, pts in zip(d.boxes, d.landmarks, strict=True):
            if max(box[2] - box[0], box[3] - box[1]) >= min_side:
                pos.append(t)
                boxes.append(box)
                points.append(pts)
    if not boxes:
        return None
    pos_a, box_a, pts_a = np.array(pos), np.array(boxes, np.float64), np.array(points, np.float64)
    per_face = [frames_list[t] for t in pos]
    resnet.descriptors(frames_list[pos[0]][None], [0], pts_a[:1])  # warm-up (allocator, first kernels)
    t_dlib, e_dlib = timed(lambda: dlib_emb.embed(per_face, box_a, pos_a), repeats, device)
    if isinstance(frames, list):  # the protocol call groups the stills by size
        t_res, e_res = timed(lambda: resnet.embed(per_face, box_a, pos_a, landmarks=pts_a), repeats, device)
    else:
        stack = torch.from_numpy(frames).to(device)
        t_res, e_res = timed(lambda: resnet.descriptors(stack, pos_a, pts_a).cpu().numpy(), repeats, device)
    t_onet, _ = timed(lambda: resnet.embed(per_face, box_a, pos_a), repeats, device)
    t_cv2 = t_torch = float("nan")
    if not isinstance(frames, list):  # backbone crops of the same faces: OpenCV per face vs one tensor call
        t_cv2, _ = timed(
            lambda: crops.to_model_input(
                [crops.crop_face(f, b) for f, b in zip(per_face, box_a, strict=True)]
            ),
            repeats,
            device,
        )
        t_torch, _ = timed(lambda: crop_resize_pad(stack, box_a, pos_a)[0], repeats, device)
    n = len(box_a)
    dist = np.linalg.norm(e_res - e_dlib, axis=1)
    ids: list[int | None] = [None, None, None]
    if not isinstance(frames, list):  # identities only make sense within a clip
        h, w = frames_list[0].shape[:2]
        ids = [
            len(cluster_identities(emb, box_a, pos_a, frame_size=(w, h), distance_threshold=0.6))
            for emb in (e_dlib, e_res)
        ]
        labels, _, _ = identities_from_tracklets(box_a, pos_a, lambda idx: e_res[idx], threshold=0.6)
        ids.append(count_identities(labels, box_a, pos_a))
    return {
        "source": name,
        "faces": n,
        "dlib_ms_per_face": 1e3 * t_dlib / n,
        "resnet_ms_per_face": 1e3 * t_res / n,
        "resnet_onet_ms_per_face": 1e3 * t_onet / n,
        "speedup": t_dlib / t_res,
        "crops_cv2_ms_per_face": 1e3 * t_cv2 / n,
        "crops_torch_ms_per_face": 1e3 * t_torch / n,
        "dist_median": float(np.median(dist)),
        "dist_max": float(dist.max()),
        "identities_dlib": ids[0],
        "identities_resnet": ids[1],
        "identities_tracklets": ids[2],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-frames", type=int, default=16, help="sampled frames per clip (default 16)")
    parser.add_argument(
        "--min-side", type=float, default=40, help="faces with a smaller box side are skipped"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per embedder; the median is kept")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    detector = MTCNN(device=device)
    dlib_emb = DlibEmbedder()
    resnet = ResnetEmbedder(device=device)
    print(f"torch {torch.__version__}, device {device}, torch threads {torch.get_num_threads()}")
    print(
        f"{'source':<34} {'faces':>5} | {'ms/face dlib':>12} {'resnet':>7} {'+onet':>7} {'dlib/resnet':>11} |"
        f" {'dist to dlib med/max':>20} | {'identities dlib/resnet/tracklets':>32} | {'crops ms/face cv2/torch':>23}"
    )
    rows = []
    for name, frames in load_sources(args.num_frames):
        row = bench_source(name, frames, detector, dlib_emb, resnet, args.min_side, args.repeats)
        if row is None:
            print(f"{name:<34} no face of {args.min_side:.0f} px or more")
            continue
        rows.append(row)
        ids = " / ".join(
            "-" if row[k] is None else str(row[k])
            for k in ("identities_dlib", "identities_resnet", "identities_tracklets")
        )
        print(
            f"{name:<34} {row['faces']:>5} | {row['dlib_ms_per_face']:>12.1f} {row['resnet_ms_per_face']:>7.1f}"
            f" {row['resnet_onet_ms_per_face']:>7.1f} {row['speedup']:>10.1f}x |"
            f" {row['dist_median']:>9.3f} / {row['dist_max']:.3f} | {ids:>32} |"
            f" {row['crops_cv2_ms_per_face']:>11.2f} / {row['crops_torch_ms_per_face']:.2f}"
        )
    if rows:
        faces = sum(r["faces"] for r in rows)
        t_d = sum(r["dlib_ms_per_face"] * r["faces"] for r in rows) / faces
        t_r = sum(r["resnet_ms_per_face"] * r["faces"] for r in rows) / faces
        t_o = sum(r["resnet_onet_ms_per_face"] * r["faces"] for r in rows) / faces
        print(
            f"all {faces} faces: dlib {t_d:.1f} ms/face, resnet {t_r:.1f} ms/face ({t_d / t_r:.1f}x), "
            f"resnet+onet {t_o:.1f} ms/face ({t_d / t_o:.1f}x)"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(device), "num_frames": args.num_frames, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
