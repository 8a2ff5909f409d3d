"""Videos/s of the Triton service with the face stage batched across requests, against one request at a time.

Two real servers (the pip tritonserver, ``mintime serve``'s :class:`~mintime.serving.server.TritonServer`) on copies
of the committed repository, one after the other, differing only in ``face_pipeline``'s ``max_batch_size``:

* ``batched``: the committed config (``max_batch_size`` 4 on CPU, dynamic batching, ragged frame inputs): the
  videos of concurrent requests share the detection and embedding passes (:meth:`FaceStage.batch`);
* ``serial``: ``max_batch_size: 1``: one video per ``execute``.

Each sends the same ``--requests`` videos (the shared clips, cycled) with ``--concurrency`` requests in flight
through the gRPC client, after one warm-up pass, and prints videos/s; the answers of both must agree.

    python benchmarks/bench_serving_batch.py [--clips DIR] [--requests 16] [--concurrency 4] [--json out.json]

Figures depend on the machine (on a 2-core CPU the shared passes save little: the face stage is compute-bound);
say which when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CLIPS = Path(os.environ.get("MINTIME_SHARED", REPO.parent / "shared")) / "data" / "videos"


def repository(dst: Path, max_batch_size: int | None) -> Path:
    """A copy of the committed repository (no exported versions); ``face_pipeline``'s batch size changed."""
    shutil.copytree(REPO / "model_repository", dst, ignore=shutil.ignore_patterns("[2-9]*", "__pycache__"))
    if max_batch_size is not None:
        config = dst / "face_pipeline" / "config.pbtxt"
        text, n = re.subn(
            r"^max_batch_size: \d+", f"max_batch_size: {max_batch_size}", config.read_text(), flags=re.M
        )
        assert n == 1, "face_pipeline/config.pbtxt has no max_batch_size"
        if max_batch_size == 1:
            text = re.sub(r"^dynamic_batching \{[^}]*\}\n", "", text, flags=re.M)
        config.write_text(text)
    return dst


def measure(repo: Path, videos: list[bytes], concurrency: int) -> dict[str, Any]:
    """Start a server on ``repo``, warm it up, time the requests; answers and videos/s."""
    from client.api import MintimeClient
    from mintime.serving.server import TritonServer, free_port

    with TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port()) as server:
        with MintimeClient(server.grpc_url) as client:
            client.predict_many_sync(videos[:concurrency], concurrency=concurrency)  # warm-up
            t0 = time.perf_counter()
            preds = client.predict_many_sync(videos, concurrency=concurrency)
            seconds = time.perf_counter() - t0
    failed = [p.error for p in preds if not p.ok]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed: {failed[:3]}")
    return {
        "seconds": round(seconds, 2),
        "videos_per_s": round(len(videos) / seconds, 3),
        "probabilities": [p.result["fake_probability"] for p in preds],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    clips = sorted(args.clips.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no clips in {args.clips}")
    videos = [clips[i % len(clips)].read_bytes() for i in range(args.requests)]
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs; {args.requests} requests, concurrency {args.concurrency}"
    )
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        for name, mbs in (("serial", 1), ("batched", None)):
            out[name] = measure(repository(Path(tmp) / name, mbs), videos, args.concurrency)
            print(
                f"{name:8s} {out[name]['videos_per_s']:7.3f} videos/s ({out[name]['seconds']:.1f} s)",
                flush=True,
            )
    agree = all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-4)
        for a, b in zip(out["serial"]["probabilities"], out["batched"]["probabilities"], strict=True)
    )
    ratio = out["batched"]["videos_per_s"] / out["serial"]["videos_per_s"]
    print(f"batched/serial {ratio:.2f}x; answers agree: {agree}")
    if args.json:
        args.json.write_text(json.dumps({"ratio": ratio, "agree": agree, **out}, indent=2))


if __name__ == "__main__":
    main()
