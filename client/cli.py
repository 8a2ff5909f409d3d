"""``mintime-client``: send videos to the MINTIME Triton service and print the verdicts.

mintime-client video.mp4                      # human-readable verdict
mintime-client --json videos/ --concurrency 8  # one JSON object per line, as `mintime predict --json`
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["VIDEO_SUFFIXES", "build_parser", "expand_videos", "summary_line", "main"]

#: File extensions taken from a folder (the same list as ``mintime predict``).
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"})


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    from client.api import DEFAULT_URL

    p = argparse.ArgumentParser(
        prog="mintime-client", description="Classify videos with a MINTIME Triton server."
    )
    p.add_argument("videos", nargs="+", type=Path, help="video files or folders (searched recursively)")
    p.add_argument("--url", default=DEFAULT_URL, help="Triton gRPC endpoint host:port (default %(default)s)")
    p.add_argument("--model", default="mintime", help="ensemble name (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default %(default)s)")
    p.add_argument("--retries", type=int, default=3, help="retries per video while the server is unavailable")
    p.add_argument("--timeout", type=float, default=None, help="per-request timeout in seconds")
    p.add_argument(
        "--max-bytes",
        type=int,
        default=None,
        help="refuse larger videos without sending them (default: the service's decode budget, 256 MiB)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per video and line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log retries")
    return p


def expand_videos(paths: list[Path]) -> list[Path]:
    """Files as given; folders replaced by the video files they contain (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES))
        else:
            out.append(p)
    return out


def summary_line(obj: dict[str, Any]) -> str:
    """A short human-readable verdict from a :meth:`Prediction.to_json` object."""
    name = Path(obj["video"]).name
    if obj.get("status") == "error":
        return f"{name}: ERROR {obj.get('error')}"
    p = obj.get("fake_probability")
    if p is None:
        return f"{name}: no face found ({obj.get('reason', 'no identity')})"
    lines = [f"{name}: {str(obj.get('label', '?')).upper()} (P(fake) = {p:.4f})"]
    for ident in obj.get("identities", []):
        if ident.get("fake_score") is not None:
            lines.append(
                f"  identity {ident['id']}: fake score {ident['fake_score']:.4f}, "
                f"{ident.get('num_faces', '?')} faces, slots {ident.get('slots')}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 0 when every video got an answer, 1 otherwise, 2 for bad arguments."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    from tqdm import tqdm

    from client.api import MintimeClient

    videos = expand_videos(args.videos)
    if not videos:
        print("error: no video files found", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print("error: --concurrency must be >= 1", file=sys.stderr)
        return 2
    client = MintimeClient(args.url, model_name=args.model, timeout=args.timeout)
    if args.max_bytes is not None:
        client.max_bytes = args.max_bytes
    bar = tqdm(total=len(videos), unit="video", file=sys.stderr, disable=args.no_progress or len(videos) < 2)

    def report(pred: Any) -> None:
        obj = pred.to_json()
        if args.json:
            bar.write(json.dumps(obj), file=sys.stdout)
        elif pred.ok:
            bar.write(summary_line(obj), file=sys.stdout)
        else:
            bar.write(f"error: {pred.source}: {pred.error}", file=sys.stderr)
        bar.update(1)

    try:
        preds = client.predict_many_sync(
            [str(v) for v in videos], concurrency=args.concurrency, retries=args.retries, on_result=report
        )
    except KeyboardInterrupt:
        return 130
    finally:
        bar.close()
    return 0 if all(p.ok for p in preds) else 1


if __name__ == "__main__":
    sys.exit(main())
