"""perf_analyzer (the 2.51.0 binary that setup.sh installs) against the real local server: the documented
commands run and the CSV is produced with a measured throughput."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PERF = REPO / "benchmarks" / "perf"

pytestmark = [pytest.mark.needs_triton, pytest.mark.needs_data]


def test_perf_analyzer_sweep_writes_csv(triton_server, data_dir: Path, tmp_path: Path):
    if not (REPO / ".tools" / "perf_analyzer" / "bin" / "perf_analyzer").is_file():
        pytest.skip(
            "perf_analyzer not installed: run `python benchmarks/perf/get_perf_analyzer.py` (setup.sh does)"
        )
    data = tmp_path / "videos.json"
    clip = data_dir / "videos" / "two_people_one_fake_720p.mp4"
    subprocess.run([sys.executable, str(PERF / "make_input_data.py"), str(clip), "-o", str(data)], check=True)
    out = tmp_path / "perf"
    run = subprocess.run(
        [
            sys.executable,
            str(PERF / "run_perf.py"),
            "--input-data",
            str(data),
            "--url",
            triton_server.grpc_url,
            "--concurrency",
            "1",
            "--request-count",
            "3",
            "--max-trials",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "merged.csv")))
    assert len(rows) == 1
    assert rows[0]["Concurrency"] == "1"
    assert float(rows[0]["Inferences/Second"]) > 0
    assert float(rows[0]["p50 latency"]) > 0
