"""Seconds per clip of the in-process pipeline, split by stage, against the original's approach.

Ours: decode only the T sampled frames (PyAV), batched MTCNN on those T frames at half resolution, dlib
embeddings + clustering, crops + slots, backbone, temporal model.
The original's approach (measured in the same run, same implementations): decode *every* frame and run MTCNN on
every frame at half resolution (its ``detect_faces.py``), then the same later stages on one face per second.
Only the decode and detection stages differ, so the benchmark times those for the original and reuses the
measured later stages (they cost the same or more in the original, which also clusters every second's face).

    python benchmarks/bench_pipeline.py [--clips DIR] [--num-frames 16] [--skip-original] [--json out.json]

Prints a table and the ratio original/ours. Figures depend on the machine: say which when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from mintime.config import DEFAULTS  # noqa: E402

DEFAULT_NUM_FRAMES = DEFAULTS.num_frames
DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def time_ours(path: Path, analyzer, engines, num_frames: int) -> dict[str, float]:
    from mintime.video import decode_sampled

    t0 = time.perf_counter()
    clip = decode_sampled(path, num_frames)
    stages = {"decode": time.perf_counter() - t0}
    faces = analyzer(clip)
    stages.update(faces.timings)
    if faces.ok:
        inputs = {name: a[None] for name, a in faces.tensors.as_inputs().items()}
        t0 = time.perf_counter()
        features = engines.backbone(inputs)
        stages["backbone"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        engines.temporal({**inputs, **features})
        stages["temporal"] = time.perf_counter() - t0
    return stages


def time_original_front(path: Path, detector, chunk: int = 16) -> dict[str, float]:
    """Decode every frame, MTCNN on every frame at half resolution (in chunks, as batched as the original)."""
    from mintime.video import iter_frames

    t0 = time.perf_counter()
    frames = [f for _, f in iter_frames(path)]
    decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(frames), chunk):
        detector.detect(np.stack(frames[i : i + chunk]), scale=0.5)
    return {"decode": decode, "detect": time.perf_counter() - t0, "frames": len(frames)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--num-frames", type=int, default=DEFAULT_NUM_FRAMES)
    ap.add_argument("--checkpoint", type=Path, help="default: the shipped demo checkpoint")
    ap.add_argument("--skip-original", action="store_true", help="do not time the original's approach")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mintime.config import PipelineConfig
    from mintime.engines import TorchEngines
    from mintime.faces.stage import FaceStage
    from mintime.networks import load_networks

    nets = load_networks(checkpoint=args.checkpoint)
    engines = TorchEngines(nets.backbone, nets.head)
    analyzer = FaceStage(PipelineConfig(num_frames=args.num_frames))
    clips = sorted(args.clips.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no clips in {args.clips}")
    # warm-up (model creation, first-call allocations)
    time_ours(clips[0], analyzer, engines, args.num_frames)

    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    stages = ["decode", "detect", "identities", "crops_slots", "backbone", "temporal"]
    print(
        f"{'clip':40s} "
        + " ".join(f"{s:>11s}" for s in stages)
        + f" {'ours':>8s} {'original':>9s} {'ratio':>6s}"
    )
    rows = []
    for path in clips:
        ours = time_ours(path, analyzer, engines, args.num_frames)
        total = sum(ours.values())
        row = {"clip": path.name, "ours": ours, "ours_total": total}
        line = (
            f"{path.name[:40]:40s} "
            + " ".join(f"{ours.get(s, 0.0):11.2f}" for s in stages)
            + f" {total:8.2f}"
        )
        if not args.skip_original:
            orig = time_original_front(path, analyzer.detector)
            later = total - ours["decode"] - ours["detect"]
            orig_total = orig["decode"] + orig["detect"] + later
            row.update(original=orig, original_total=orig_total, ratio=orig_total / total)
            line += f" {orig_total:9.2f} {orig_total / total:6.1f}"
        rows.append(row)
        print(line, flush=True)
    tot_ours = sum(r["ours_total"] for r in rows)
    summary = f"total ours {tot_ours:.2f} s for {len(rows)} clips ({tot_ours / len(rows):.2f} s/clip)"
    if not args.skip_original:
        tot_orig = sum(r["original_total"] for r in rows)
        summary += f"; original approach {tot_orig:.2f} s; ratio {tot_orig / tot_ours:.1f}x"
    print(summary)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
