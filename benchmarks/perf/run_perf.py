"""Concurrency sweep of the ``mintime`` ensemble with perf_analyzer: one CSV per point, then one merged CSV.

Scenarios (the ensemble takes one video per request, so batch size is 1 throughout):

* ``online``: one client at a time and a little concurrency: latency per video.
* ``offline``: as many requests in flight as the server has instances to overlap: throughput.

Each point measures a fixed number of requests (``--request-count``, default 10) as one sample: on a CPU a
request takes seconds and the clips differ in cost, so perf_analyzer's stability search (the last 3 windows
within a percentage) rarely settles there. ``--request-count 0`` switches to stability windows for faster hosts.

Pure builders (:func:`build_command`, :func:`csv_name`, :func:`merge_csvs`) are unit-tested without the binary::

    python benchmarks/perf/run_perf.py --input-data outputs/perf/videos.json --url 127.0.0.1:8001 \
        --scenario online --out outputs/perf
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SCENARIOS",
    "CSV_PATTERN",
    "PerfPoint",
    "csv_name",
    "parse_csv_name",
    "build_command",
    "sweep_points",
    "merge_csvs",
    "find_perf_analyzer",
    "run_sweep",
    "summary_line",
    "main",
]

logger = logging.getLogger(__name__)

#: Concurrency levels of each named scenario.
SCENARIOS: dict[str, tuple[int, ...]] = {"online": (1, 2), "offline": (4, 8)}
#: Per-point CSV names: ``<scenario>_b<batch>_c<concurrency>.csv``.
CSV_PATTERN = re.compile(r"^(?P<scenario>[a-z][a-z0-9]*)_b(?P<batch>\d+)_c(?P<concurrency>\d+)\.csv$")


@dataclass(frozen=True)
class PerfPoint:
    """One measurement point of a sweep."""

    scenario: str
    concurrency: int
    batch_size: int = 1


def csv_name(point: PerfPoint) -> str:
    """The CSV file name of a point (matches :data:`CSV_PATTERN`)."""
    return f"{point.scenario}_b{point.batch_size}_c{point.concurrency}.csv"


def parse_csv_name(name: str) -> PerfPoint:
    """Inverse of :func:`csv_name`.

    Raises:
        ValueError: the name does not match :data:`CSV_PATTERN`.
    """
    m = CSV_PATTERN.match(name)
    if m is None:
        raise ValueError(
            f"not a per-point CSV name: {name!r} (expected <scenario>_b<batch>_c<concurrency>.csv)"
        )
    return PerfPoint(m["scenario"], int(m["concurrency"]), int(m["batch"]))


#: Defaults that give figures on a 2-core CPU, where one video takes seconds and the clips differ in cost:
#: a fixed number of requests per point (perf_analyzer's ``--request-count``: measure exactly these, no search
#: for stability). 10 = each of the five shared clips twice.
DEFAULT_REQUESTS = 10
#: Stability-window mode (``requests=0``, for a faster host): windows of this many requests, stable when the last
#: 3 windows agree within ``stability_percentage`` %, at most ``max_trials`` windows.
DEFAULT_WINDOW_REQUESTS = 10
DEFAULT_STABILITY_PERCENTAGE = 100
DEFAULT_MAX_TRIALS = 6


def build_command(
    perf_analyzer: str | os.PathLike,
    point: PerfPoint,
    *,
    csv_path: str | os.PathLike,
    input_data: str | os.PathLike,
    model: str = "mintime",
    url: str = "127.0.0.1:8001",
    protocol: str = "grpc",
    requests: int = DEFAULT_REQUESTS,
    window_requests: int = DEFAULT_WINDOW_REQUESTS,
    stability_percentage: int = DEFAULT_STABILITY_PERCENTAGE,
    max_trials: int = DEFAULT_MAX_TRIALS,
    metrics_url: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The perf_analyzer argv for one point (pure).

    Args:
        perf_analyzer: the binary.
        point: scenario, concurrency and batch size.
        csv_path: ``-f`` target (written with ``--verbose-csv``).
        input_data: the ``--input-data`` JSON (see make_input_data.py).
        model, url, protocol: the server.
        requests: requests measured at this point (at least the concurrency), as one sample without a
            stability search; 0 = stability windows instead (the next three arguments).
        window_requests: requests per measurement window (``count_windows``: each request takes seconds).
        stability_percentage, max_trials: perf_analyzer's stability criterion over the last 3 windows.
        metrics_url: collect the server's Prometheus metrics too.
        extra: more flags.
    """
    if point.concurrency < 1 or point.batch_size < 1:
        raise ValueError(f"concurrency and batch size must be >= 1: {point}")
    if requests < 0 or window_requests < 1 or max_trials < 3 or stability_percentage < 1:
        raise ValueError(
            "requests must be >= 0, window_requests and stability_percentage >= 1, max_trials >= 3 "
            "(stability needs 3 windows)"
        )
    cmd = [
        str(perf_analyzer),
        "-m", model,
        "-u", url,
        "-i", protocol,
        "-b", str(point.batch_size),
        "--input-data", str(input_data),
        "--concurrency-range", f"{point.concurrency}:{point.concurrency}",
    ]  # fmt: skip
    if requests:
        cmd += ["--request-count", str(max(requests, point.concurrency))]
    else:
        cmd += [
            "--measurement-mode", "count_windows",
            "--measurement-request-count", str(max(window_requests, point.concurrency)),
            "--stability-percentage", str(stability_percentage),
            "--max-trials", str(max_trials),
        ]  # fmt: skip
    cmd += ["-f", str(csv_path), "--verbose-csv"]
    if metrics_url:
        cmd += ["--collect-metrics", "--metrics-url", metrics_url]
    return cmd + list(extra)


def sweep_points(scenarios: Sequence[str], concurrency: Sequence[int] | None = None) -> list[PerfPoint]:
    """The points of the named scenarios (or of the given concurrency levels for each scenario)."""
    points = []
    for s in scenarios:
        if s not in SCENARIOS:
            raise ValueError(f"unknown scenario {s!r}; choose from {sorted(SCENARIOS)}")
        points += [PerfPoint(s, c) for c in (concurrency or SCENARIOS[s])]
    return points


def merge_csvs(folder: str | os.PathLike, out: str | os.PathLike) -> list[dict[str, str]]:
    """Merge the per-point CSVs of ``folder`` into ``out`` with ``scenario,batch_size`` columns first.

    Only files matching :data:`CSV_PATTERN` are read; each must hold perf_analyzer's header and at least one row,
    and every file must have the same header.

    Returns:
        The merged rows (sorted by scenario, batch, concurrency).

    Raises:
        ValueError: no per-point CSV, an empty one, or differing headers.
    """
    files = sorted(p for p in Path(folder).iterdir() if CSV_PATTERN.match(p.name))
    if not files:
        raise ValueError(f"no per-point CSV (<scenario>_b<batch>_c<concurrency>.csv) in {folder}")
    header: list[str] | None = None
    rows: list[tuple[tuple[str, int, int], dict[str, str]]] = []
    for path in files:
        point = parse_csv_name(path.name)
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            got = [h.strip() for h in reader.fieldnames or []]
            if header is None:
                header = got
            elif got != header:
                raise ValueError(f"{path.name}: header differs from the other files")
            data = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
        if not data:
            raise ValueError(f"{path.name}: no measurement row")
        for r in data:
            merged = {"scenario": point.scenario, "batch_size": str(point.batch_size), **r}
            rows.append(
                ((point.scenario, point.batch_size, int(r.get("Concurrency", point.concurrency))), merged)
            )
    rows.sort(key=lambda x: x[0])
    fieldnames = ["scenario", "batch_size", *(header or [])]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(r for _, r in rows)
    return [r for _, r in rows]


def find_perf_analyzer() -> tuple[Path, dict[str, str]]:
    """The perf_analyzer binary and the environment to run it (``get_perf_analyzer.py``'s folder first)."""
    local = Path(__file__).resolve().parents[2] / ".tools" / "perf_analyzer"
    env = dict(os.environ)
    if (local / "bin" / "perf_analyzer").is_file():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(local / "lib"), env.get("LD_LIBRARY_PATH")) if p
        )
        return local / "bin" / "perf_analyzer", env
    from shutil import which

    found = which("perf_analyzer")
    if found is None:
        raise FileNotFoundError("perf_analyzer not found: run `python benchmarks/perf/get_perf_analyzer.py`")
    return Path(found), env


def run_sweep(
    points: Sequence[PerfPoint], out_dir: Path, *, input_data: Path, timeout: float = 1800, **kwargs: object
) -> tuple[Path | None, list[PerfPoint]]:
    """Run every point (one CSV and one log each) and merge the CSVs into ``out_dir/merged.csv``.

    A point that fails (perf_analyzer found no stable measurement, the server went away) is logged and skipped.

    Returns:
        The merged CSV (None when no point succeeded) and the failed points.
    """
    binary, env = find_perf_analyzer()
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for point in points:
        csv_path = out_dir / csv_name(point)
        csv_path.unlink(missing_ok=True)
        cmd = build_command(binary, point, csv_path=csv_path, input_data=input_data, **kwargs)
        logger.info("%s", " ".join(cmd))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        (out_dir / f"{csv_path.stem}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not csv_path.is_file():
            tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-2:]
            logger.error("%s failed (exit %d): %s", point, proc.returncode, " / ".join(tail))
            failed.append(point)
    if len(failed) == len(points):
        return None, failed
    merged = out_dir / "merged.csv"
    merge_csvs(out_dir, merged)
    return merged, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="perf_analyzer concurrency sweep of the mintime ensemble",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--input-data", type=Path, required=True, help="JSON from make_input_data.py")
    parser.add_argument("--out", type=Path, default=Path("outputs/perf"), help="CSV folder")
    parser.add_argument("--scenario", nargs="+", default=["online"], choices=sorted(SCENARIOS))
    parser.add_argument("--concurrency", type=int, nargs="+", help="override the scenario's levels")
    parser.add_argument("--url", default="127.0.0.1:8001", help="gRPC endpoint")
    parser.add_argument("--model", default="mintime", help="model (the ensemble)")
    parser.add_argument(
        "--request-count",
        type=int,
        default=DEFAULT_REQUESTS,
        help="requests measured per concurrency level, as one sample (0 = stability windows instead)",
    )
    parser.add_argument(
        "--window-requests", type=int, default=DEFAULT_WINDOW_REQUESTS, help="with --request-count 0"
    )
    parser.add_argument(
        "--stability-percentage",
        type=int,
        default=DEFAULT_STABILITY_PERCENTAGE,
        help="with --request-count 0: the last 3 windows must agree within this %%",
    )
    parser.add_argument(
        "--max-trials",
        type=int,
        default=DEFAULT_MAX_TRIALS,
        help="with --request-count 0: windows before giving up",
    )
    parser.add_argument("--metrics-url", default=None, help="e.g. http://127.0.0.1:8002/metrics")
    parser.add_argument("--merge-only", action="store_true", help="only merge the CSVs already in --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.merge_only:
        rows = merge_csvs(args.out, args.out / "merged.csv")
        print(f"{args.out / 'merged.csv'}: {len(rows)} rows")
        return 0
    merged, failed = run_sweep(
        sweep_points(args.scenario, args.concurrency),
        args.out,
        input_data=args.input_data,
        url=args.url,
        model=args.model,
        requests=args.request_count,
        window_requests=args.window_requests,
        stability_percentage=args.stability_percentage,
        max_trials=args.max_trials,
        metrics_url=args.metrics_url,
    )
    for point in failed:
        print(f"FAILED: {point} (see {args.out / csv_name(point)[:-4]}.log)", file=sys.stderr)
    if merged is None:
        return 1
    with open(merged, newline="") as fh:
        for row in csv.DictReader(fh):
            print(summary_line(row))
    print(merged)
    return 1 if failed else 0


def summary_line(row: dict[str, str]) -> str:
    """One merged-CSV row as ``online c=1: 0.19 video/s, p50 4.1 s, p95 10.6 s``."""

    def seconds(key: str) -> str:
        value = row.get(key)
        return f"{float(value) / 1e6:.1f} s" if value else "n/a"

    ips = row.get("Inferences/Second")
    rate = f"{float(ips):.3f} video/s" if ips else "n/a"
    return (
        f"{row['scenario']} c={row.get('Concurrency')}: {rate}, p50 {seconds('p50 latency')}, "
        f"p95 {seconds('p95 latency')}"
    )


if __name__ == "__main__":
    sys.exit(main())
