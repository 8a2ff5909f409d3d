"""Seconds per clip of the in-process pipeline, split by stage: the device face stage against the dlib reference.

Both face stages run in the same process on the same decoded frames (decode is timed once per clip):

* ``resnet`` (the default): batched MTCNN, tracklets first, a bounded number of faces per tracklet aligned from
  MTCNN's landmarks and embedded in one batch by dlib's ResNet in PyTorch, slot faces cut from the frames tensor;
* ``dlib`` (the reference): dlib's 5-point alignment and descriptor for every detection, then clustering.

Then the backbone and the temporal model on each stage's slots. Optionally (``--original``) the original's
front end: decode *every* frame and run MTCNN on every frame at half resolution (its ``detect_faces.py``).

    python benchmarks/bench_pipeline.py [--clips DIR] [--num-frames 16] [--device cpu|cuda] [--repeats 1]
                                        [--original] [--json out.json]

Prints, per clip, the seconds of each stage for both face stages and the identities each found, then the
medians and the ratios dlib/resnet. Figures depend on the machine: say which when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from mintime.config import DEFAULTS

DEFAULT_CLIPS = Path(os.environ.get("MINTIME_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEFAULT_CLIPS = DEFAULT_CLIPS / "data" / "videos"
STAGES = ("decode", "detect", "identities", "crops_slots", "backbone", "temporal")
EMBEDDERS = ("resnet", "dlib")


def time_clip(path: Path, stages: dict[str, Any], engines: Any, num_frames: int) -> dict[str, dict[str, Any]]:
    """Seconds per stage of one clip for every face stage, plus the identities each found."""
    from mintime import contract
    from mintime.video import decode_sampled

    t0 = time.perf_counter()
    clip = decode_sampled(path, num_frames)
    decode = time.perf_counter() - t0
    out = {}
    for name, stage in stages.items():
        faces = stage(clip)
        row: dict[str, Any] = {"decode": decode, **{k: v for k, v in faces.timings.items() if k in STAGES}}
        row["relaxed"] = faces.timings.get("relaxed", 0.0)
        if faces.ok:
            inputs = {n: a[None] for n, a in faces.tensors.as_inputs().items()}
            t0 = time.perf_counter()
            features = engines.backbone(inputs)
            row["backbone"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            logit = engines.temporal({**inputs, **features})[contract.TEMPORAL_LOGIT]
            row["temporal"] = time.perf_counter() - t0
            row["logit"] = float(logit[0, 0])
        row["total"] = sum(row.get(s, 0.0) for s in STAGES) + row["relaxed"]
        row["n_identities"] = len(faces.identities)
        row["kept_faces"] = [len(i.faces) for i in faces.kept]
        out[name] = row
    return out


def time_original_front(path: Path, detector: Any, chunk: int = 16) -> dict[str, float]:
    """Decode every frame, MTCNN on every frame at half resolution (in chunks, as batched as the original)."""
    from mintime.video import iter_frames

    t0 = time.perf_counter()
    frames = [f for _, f in iter_frames(path)]
    decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(frames), chunk):
        detector.detect(np.stack(frames[i : i + chunk]), scale=0.5)
    return {"decode": decode, "detect": time.perf_counter() - t0, "frames": len(frames)}


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows) if rows else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--num-frames", type=int, default=DEFAULTS.num_frames)
    ap.add_argument("--device", default="cpu", help="torch device of the face stages and the networks")
    ap.add_argument("--checkpoint", type=Path, help="default: the shipped demo checkpoint")
    ap.add_argument(
        "--repeats", type=int, default=1, help="timed passes over the clips (the minimum is kept)"
    )
    ap.add_argument("--original", action="store_true", help="also time the original's every-frame front end")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mintime.engines import TorchEngines
    from mintime.faces.stage import FaceStage
    from mintime.networks import load_networks

    nets = load_networks(checkpoint=args.checkpoint)
    engines = TorchEngines(nets.backbone, nets.head, device=args.device)
    stages = {
        e: FaceStage(DEFAULTS.replace(num_frames=args.num_frames, embedder=e, device=args.device))
        for e in EMBEDDERS
    }
    clips = sorted(args.clips.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no clips in {args.clips}")
    time_clip(clips[0], stages, engines, args.num_frames)  # warm-up: models, first-call allocations

    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"device {args.device}, {args.num_frames} sampled frames, best of {args.repeats}"
    )
    header = (
        f"{'clip':34s} {'stage':6s} "
        + " ".join(f"{s:>11s}" for s in STAGES)
        + f" {'total':>7s}  identities (faces of kept)"
    )
    print(header)
    rows: dict[str, list[dict[str, Any]]] = {e: [] for e in EMBEDDERS}
    per_clip = []
    for path in clips:
        runs = [time_clip(path, stages, engines, args.num_frames) for _ in range(max(1, args.repeats))]
        best = {e: min((r[e] for r in runs), key=lambda x: x["total"]) for e in EMBEDDERS}
        entry: dict[str, Any] = {"clip": path.name, **best}
        for e in EMBEDDERS:
            r = best[e]
            rows[e].append(r)
            print(
                f"{path.name[:34]:34s} {e:6s} "
                + " ".join(f"{r.get(s, 0.0):11.3f}" for s in STAGES)
                + f" {r['total']:7.2f}  {r['n_identities']} {r['kept_faces']}",
                flush=True,
            )
        if args.original:
            orig = time_original_front(path, stages["resnet"].detector)
            later = best["resnet"]["total"] - best["resnet"]["decode"] - best["resnet"].get("detect", 0.0)
            entry["original_front"] = orig
            entry["original_total"] = orig["decode"] + orig["detect"] + later
            print(
                f"{'':34s} orig.  decode {orig['decode']:.2f} + detect {orig['detect']:.2f} on {orig['frames']} frames"
            )
        per_clip.append(entry)
    print()
    summary = {}
    for e in EMBEDDERS:
        summary[e] = {s: _median(rows[e], s) for s in (*STAGES, "total")}
    for s in (*STAGES, "total"):
        a, b = summary["resnet"][s], summary["dlib"][s]
        ratio = b / a if a > 0 else float("nan")
        print(f"median {s:12s} resnet {a:7.3f} s   dlib {b:7.3f} s   dlib/resnet {ratio:5.1f}x")
    same = all(
        r["n_identities"] == d["n_identities"] and len(r["kept_faces"]) == len(d["kept_faces"])
        for r, d in zip(rows["resnet"], rows["dlib"], strict=True)
    )
    print(f"identity counts (all, kept) equal on every clip: {same}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "clips": per_clip}, indent=2))


if __name__ == "__main__":
    main()
