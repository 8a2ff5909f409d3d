"""``mintime-client``: send videos to the MINTIME Triton service and print the verdicts.

mintime-client video.mp4                      # human-readable verdict
mintime-client --json videos/ --concurrency 8  # one JSON object per line, as `mintime predict --json`

Results are printed in input order (requests complete in any order); errors also go to stderr, one line each.
Exit codes: 0 every video answered, 1 some failed, 2 bad arguments, 3 no server at ``--url`` (or its model is
not ready).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "VIDEO_SUFFIXES",
    "EXIT_NO_SERVER",
    "build_parser",
    "expand_videos",
    "summary_line",
    "ModelLines",
    "server_problem",
    "InOrder",
    "main",
]

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
    p.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retries while the server is unavailable (at start and per video; default %(default)s)",
    )
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
    """Files as given; folders replaced by the video files they contain (sorted; a folder without any is named
    in a warning on stderr)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                print(
                    f"warning: no video files in {p} ({', '.join(sorted(VIDEO_SUFFIXES))})", file=sys.stderr
                )
            out.extend(found)
        else:
            out.append(p)
    return out


def summary_line(obj: dict[str, Any]) -> str:
    """The human-readable verdict of a :meth:`Prediction.to_json` object: ``mintime predict``'s text (one
    renderer, :func:`mintime.explain.human_summary`)."""
    from mintime.explain import human_summary

    return human_summary(Path(obj["video"]).name, obj)


class ModelLines:
    """The ``model:`` line (and the caveat) of ``mintime predict``, printed before the first answer of each model
    (once, unless the server changes its model between answers)."""

    def __init__(self) -> None:
        self._last: str | None = None

    def __call__(self, obj: dict[str, Any]) -> str | None:
        from mintime.explain import model_banner

        model = obj.get("model")
        if not model:
            return None
        text = model_banner(model)
        if text == self._last:
            return None
        self._last = text
        return text


#: Exit codes: every video answered / some failed / bad arguments / no usable server.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_SERVER = 0, 1, 2, 3


def server_problem(client: Any, *, retries: int = 0, backoff: float = 0.5) -> str | None:
    """Why ``client``'s server cannot take requests (None when it can).

    Retries a refused connection ``retries`` times with exponential backoff (a server that is starting).
    """
    from client.api import backoff_delay

    url = client.url
    for attempt in range(retries + 1):
        try:
            live = client.grpc.is_server_live(client_timeout=client.timeout or 10.0)
            break
        except Exception as exc:  # connection refused, DNS, timeout: no server to talk to
            if attempt < retries:
                time.sleep(backoff_delay(attempt + 1, backoff))
                continue
            logging.getLogger(__name__).info("%s: %s", url, exc)
            return f"no server at {url} (start one with `mintime serve`, or give --url)"
    if not live:
        return f"the server at {url} is not live yet (retry in a moment)"
    try:
        ready = client.grpc.is_model_ready(client.model_name, client_timeout=client.timeout or 10.0)
    except Exception as exc:
        return f"the server at {url} cannot report on model {client.model_name!r}: {exc}"
    if not ready:
        return f"the server at {url} has no ready model {client.model_name!r} (check `mintime serve`'s log)"
    return None


class InOrder:
    """Hands results to ``emit`` in input order as soon as every earlier one is in (completion order varies).

    Args:
        sources: the inputs, as the :class:`~client.api.Prediction` ``source`` strings they produce.
        emit: called once per result, in input order.
    """

    def __init__(self, sources: list[str], emit: Callable[[Any], None]) -> None:
        self._slots: dict[str, list[int]] = {}
        for i, src in enumerate(sources):
            self._slots.setdefault(src, []).append(i)
        self._done: list[Any] = [None] * len(sources)
        self._next = 0
        self._emit = emit

    def __call__(self, pred: Any) -> None:
        self._done[self._slots[pred.source].pop(0)] = pred
        while self._next < len(self._done) and self._done[self._next] is not None:
            self._emit(self._done[self._next])
            self._next += 1


def local_refusals(videos: list[Path], max_bytes: int | None) -> list[Any]:
    """The videos refused without contacting any server (empty or over ``max_bytes``), as failed predictions."""
    from client.api import MintimeClientError, Prediction, read_video

    refused = []
    for video in videos:
        try:
            size = Path(video).stat().st_size
            if size == 0 or (max_bytes is not None and size > max_bytes):
                read_video(video, max_bytes=max_bytes)  # raises the client's precise message
        except (MintimeClientError, OSError) as exc:
            refused.append(Prediction(str(video), None, str(exc)))
    return refused


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 0 when every video got an answer, 1 otherwise, 2 for bad arguments, 3 when no
    server answers at ``--url`` (or its model is not ready)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    from tqdm import tqdm

    from client.api import MintimeClient

    videos = expand_videos(args.videos)
    if not videos:
        print("error: no video files found", file=sys.stderr)
        return EXIT_USAGE
    if args.concurrency < 1:
        print("error: --concurrency must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    client = MintimeClient(args.url, model_name=args.model, timeout=args.timeout)
    if args.max_bytes is not None:
        client.max_bytes = args.max_bytes
    refused = local_refusals(videos, client.max_bytes)
    if len(refused) == len(videos):  # nothing to send: no server needed to say so
        for pred in refused:
            if args.json:
                print(json.dumps(pred.to_json()), flush=True)
            print(f"error: {pred.source}: {pred.error}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    problem = server_problem(client, retries=args.retries)
    client.close()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_NO_SERVER
    bar = tqdm(
        total=len(videos),
        unit="video",
        file=sys.stderr,
        disable=args.no_progress or len(videos) < 2 or not sys.stderr.isatty(),
    )
    model_lines = ModelLines()

    def emit(pred: Any) -> None:
        obj = pred.to_json()
        if args.json:
            bar.write(json.dumps(obj), file=sys.stdout)
        elif pred.ok:
            banner = model_lines(obj)
            if banner:
                bar.write(banner, file=sys.stdout)
            bar.write(summary_line(obj), file=sys.stdout)
        if not pred.ok:
            bar.write(f"error: {pred.source}: {pred.error}", file=sys.stderr)

    in_order = InOrder([str(v) for v in videos], emit)

    def on_result(pred: Any) -> None:
        bar.update(1)
        in_order(pred)

    try:
        preds = client.predict_many_sync(
            [str(v) for v in videos], concurrency=args.concurrency, retries=args.retries, on_result=on_result
        )
    except KeyboardInterrupt:
        return 130
    finally:
        bar.close()
    return EXIT_OK if all(p.ok for p in preds) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
