"""Videos/s of ``mintime predict`` over many videos: decode-then-compute against decoding the next video(s) in a
background thread (``--prefetch``), in one process, on the same videos, answers compared.

    python benchmarks/bench_predict_prefetch.py [--clips DIR] [--copies 2] [--prefetch 1] [--repeats 1]

The five shared clips, each listed ``--copies`` times (≥ 10 videos by default), go through one
:class:`mintime.pipeline.Predictor` (the shipped default weights, 16 frames) with ``prefetch=0`` (the baseline:
each video decoded only when the previous one is finished) and with ``prefetch=N``; the order of the two runs
alternates over ``--repeats``. Prints seconds, videos/s and the ratio, and whether every answer is identical.
Measure on a quiet machine: on 2 cores any other job changes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

DEFAULT_CLIPS = Path(os.environ.get("MINTIME_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEFAULT_CLIPS = DEFAULT_CLIPS / "data" / "videos"


def run_once(predictor, videos: list[Path], prefetch: int) -> tuple[float, list[str]]:
    """Seconds for all videos, and each answer as JSON text."""
    t0 = time.perf_counter()
    answers = []
    for _video, clip in predictor.decoded(videos, prefetch=prefetch):
        if isinstance(clip, BaseException):
            answers.append(f"error: {clip}")
            continue
        answers.append(json.dumps(predictor.predict_decoded(clip), sort_keys=True))
    return time.perf_counter() - t0, answers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help="folder of videos")
    ap.add_argument("--copies", type=int, default=2, help="times each clip is listed")
    ap.add_argument("--prefetch", type=int, default=1, help="videos decoded ahead in the new path")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each path (alternating order)")
    args = ap.parse_args(argv)

    from mintime.config import PipelineConfig
    from mintime.engines import TorchEngines
    from mintime.networks import load_networks
    from mintime.pipeline import Predictor

    clips = sorted(args.clips.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no .mp4 clips in {args.clips}")
    videos = clips * args.copies
    nets = load_networks()
    predictor = Predictor(PipelineConfig(), TorchEngines(nets.backbone, nets.head), model=nets.model)
    run_once(predictor, clips[:1], 0)  # warm-up: weights, first allocations
    times: dict[int, list[float]] = {0: [], args.prefetch: []}
    answers: dict[int, list[str]] = {}
    for r in range(args.repeats):
        order = (0, args.prefetch) if r % 2 == 0 else (args.prefetch, 0)
        for p in order:
            sec, ans = run_once(predictor, videos, p)
            times[p].append(sec)
            if answers.setdefault(p, ans) != ans:
                raise SystemExit(f"prefetch={p}: answers changed between repeats")
    import torch

    print(
        f"{len(videos)} videos ({len(clips)} clips x {args.copies}), {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads"
    )
    best = {p: min(t) for p, t in times.items()}
    for p in (0, args.prefetch):
        name = "decode then compute (prefetch 0)" if p == 0 else f"prefetch {p}"
        print(f"  {name:34s} {best[p]:7.1f} s  {len(videos) / best[p]:.3f} videos/s")
    print(
        f"  speed-up {best[0] / best[args.prefetch]:.2f}x; answers identical: {answers[0] == answers[args.prefetch]}"
    )
    return 0 if answers[0] == answers[args.prefetch] else 1


if __name__ == "__main__":
    raise SystemExit(main())
