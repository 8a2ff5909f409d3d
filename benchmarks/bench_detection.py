"""Face detection cost per clip: batched MTCNN on T sampled frames vs MTCNN on every frame (the original).

For each clip, all frames are decoded once (not timed). Then, with the same detector (this project's batched
MTCNN, half resolution, thresholds 0.85/0.95/0.95), two scenarios are timed:

* ``sampled``: the ``T`` frames the pipeline samples (uniform, :func:`mintime.video.sample_frame_indices`),
  one cascade pass over all of them;
* ``every``: every frame of the clip, as the original ``detect_faces.py`` did, fed in chunks of ``--chunk``.

The ratio ``every / sampled`` is the time saved per clip by detecting on the sampled frames only.

Usage::

    python benchmarks/bench_detection.py                          # the shared clips, CPU
    python benchmarks/bench_detection.py --device cuda --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mintime.faces.mtcnn import MTCNN

DEFAULT_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def decode_all(path: Path) -> np.ndarray:
    """Every frame of a clip, (N, H, W, 3) uint8 RGB."""
    try:
        from mintime.video import decode_sampled

        return decode_sampled(path, num_frames=1_000_000).frames
    except ImportError:
        import cv2

        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame[:, :, ::-1])
        return np.ascontiguousarray(np.stack(frames))


def sampled_indices(total: int, num: int) -> np.ndarray:
    """The pipeline's uniform sampling (first and last frame included)."""
    try:
        from mintime.video import sample_frame_indices

        return sample_frame_indices(total, num)
    except ImportError:
        return np.unique(np.linspace(0, total - 1, min(num, total)).round().astype(np.int64))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_detect(
    det: MTCNN, frames: np.ndarray | torch.Tensor, *, scale: float, chunk: int, repeats: int
) -> tuple[float, int]:
    """Median seconds of ``det.detect`` over ``repeats`` runs, and the number of faces found."""
    times, faces = [], 0
    for _ in range(repeats):
        _sync(det.device)
        t0 = time.perf_counter()
        out = det.detect(frames, scale=scale, max_batch_frames=chunk)
        _sync(det.device)
        times.append(time.perf_counter() - t0)
        faces = sum(len(d) for d in out)
    return statistics.median(times), faces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "clips", nargs="*", type=Path, help=f"video files (default: *.mp4 in {DEFAULT_CLIPS})"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-frames", type=int, default=32, help="sampled frames per clip (default 32)")
    parser.add_argument(
        "--chunk", type=int, default=32, help="frames per cascade pass for 'every' (default 32)"
    )
    parser.add_argument("--scale", type=float, default=0.5, help="detection resolution factor (default 0.5)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per scenario; the median is kept")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    clips = args.clips or sorted(DEFAULT_CLIPS.glob("*.mp4"))
    if not clips:
        print(f"no clips found (looked in {DEFAULT_CLIPS})", file=sys.stderr)
        return 2
    det = MTCNN(device=args.device)
    device = det.device
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, scale {args.scale}"
    )
    header = f"{'clip':<40} {'frames':>6} {'HxW':>10} {'sampled s':>10} {'every s':>9} {'every/sampled':>14}"
    print(header + f" {'faces (sampled / every)':>24}")
    results = []
    warm = False
    for path in clips:
        frames = decode_all(path)
        total = frames.shape[0]
        idx = sampled_indices(total, args.num_frames)
        data = torch.from_numpy(frames).to(device) if device.type == "cuda" else frames
        sampled = data[torch.from_numpy(idx).to(device)] if device.type == "cuda" else frames[idx]
        if not warm:  # first-call overheads (allocator, kernels) out of the timings
            det.detect(sampled[:2], scale=args.scale)
            warm = True
        t_s, f_s = time_detect(det, sampled, scale=args.scale, chunk=len(idx), repeats=args.repeats)
        t_e, f_e = time_detect(det, data, scale=args.scale, chunk=args.chunk, repeats=args.repeats)
        row = {
            "clip": path.name,
            "frames": int(total),
            "height": int(frames.shape[1]),
            "width": int(frames.shape[2]),
            "sampled_frames": int(len(idx)),
            "sampled_s": t_s,
            "every_s": t_e,
            "ratio": t_e / t_s,
            "sampled_fps": len(idx) / t_s,
            "every_fps": total / t_e,
            "faces_sampled": f_s,
            "faces_every": f_e,
        }
        results.append(row)
        size = f"{frames.shape[1]}x{frames.shape[2]}"
        print(
            f"{path.name:<40} {total:>6} {size:>10} {t_s:>10.2f} {t_e:>9.2f} {t_e / t_s:>14.1f}"
            f" {f'{f_s} / {f_e}':>24}"
        )
        del frames, data, sampled
    ts = sum(r["sampled_s"] for r in results)
    te = sum(r["every_s"] for r in results)
    nf = sum(r["frames"] for r in results)
    ns = sum(r["sampled_frames"] for r in results)
    print(
        f"total: sampled {ts:.2f} s ({ns / ts:.1f} frames/s, {len(results) / ts:.2f} clips/s); every frame "
        f"{te:.2f} s ({nf / te:.1f} frames/s, {len(results) / te:.2f} clips/s); ratio {te / ts:.1f}x"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(device), "scale": args.scale, "clips": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
