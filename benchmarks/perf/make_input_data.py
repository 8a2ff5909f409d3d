"""Write a perf_analyzer ``--input-data`` JSON that sends real videos as the ensemble's ``VIDEO`` input.

``VIDEO`` is ``TYPE_UINT8 [-1]`` (the file's bytes, batch dim added by perf_analyzer). For a non-BYTES input,
perf_analyzer takes ``{"b64": <base64 of the raw tensor bytes>}`` plus an explicit ``"shape"`` (the input has a
variable dim): so each entry is ``{"VIDEO": {"b64": base64(file), "shape": [num_bytes]}}``, one entry per video,
sent in turn. (A ``TYPE_STRING`` input would instead need the serialized BYTES tensor: a 4-byte little-endian
length, then the bytes.)

    python benchmarks/perf/make_input_data.py ../shared/data/videos/*.mp4 -o outputs/perf/videos.json
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mintime.contract import ENSEMBLE

__all__ = ["input_entry", "build_input_data", "write_input_data", "main"]

INPUT_NAME = ENSEMBLE.inputs[0].name


def input_entry(data: bytes, name: str = INPUT_NAME) -> dict[str, Any]:
    """One perf_analyzer data entry for an encoded video (UINT8 [-1])."""
    if not data:
        raise ValueError("empty video")
    return {name: {"b64": base64.b64encode(data).decode("ascii"), "shape": [len(data)]}}


def build_input_data(videos: Sequence[Path | bytes], name: str = INPUT_NAME) -> dict[str, Any]:
    """The whole ``--input-data`` document: ``{"data": [entry per video]}``."""
    entries = [input_entry(v if isinstance(v, bytes) else Path(v).read_bytes(), name) for v in videos]
    if not entries:
        raise ValueError("no videos")
    return {"data": entries}


def write_input_data(videos: Sequence[Path], out: Path, name: str = INPUT_NAME) -> Path:
    """Write the JSON for ``videos`` to ``out`` (its folder is created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(build_input_data(videos, name)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="perf_analyzer input data for the mintime ensemble")
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    missing = [str(v) for v in args.videos if not v.is_file()]
    if missing:
        print(f"error: not found: {missing}", file=sys.stderr)
        return 2
    path = write_input_data(args.videos, args.output)
    print(f"{path}: {len(args.videos)} videos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
