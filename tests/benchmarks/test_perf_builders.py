"""perf_analyzer command builders, input data and the CSV merge (no binary needed)."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers.scripts import load_script

PERF = REPO / "benchmarks" / "perf"


run_perf = load_script(PERF / "run_perf.py", "perf_run_perf")
make_input_data = load_script(PERF / "make_input_data.py", "perf_make_input_data")
get_perf_analyzer = load_script(PERF / "get_perf_analyzer.py", "perf_get_perf_analyzer")

HEADER = (
    "Concurrency,Inferences/Second,Client Send,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency"
)


def test_build_command_for_one_point():
    point = run_perf.PerfPoint("online", concurrency=2)
    cmd = run_perf.build_command(
        "/pa", point, csv_path="out/online_b1_c2.csv", input_data="v.json", url="127.0.0.1:9001",
        metrics_url="http://127.0.0.1:9002/metrics",
    )  # fmt: skip
    assert cmd[0] == "/pa"
    pairs = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert pairs["-m"] == "mintime" and pairs["-u"] == "127.0.0.1:9001" and pairs["-i"] == "grpc"
    assert pairs["-b"] == "1" and pairs["--input-data"] == "v.json"
    assert pairs["--concurrency-range"] == "2:2" and pairs["-f"] == "out/online_b1_c2.csv"
    # the default: a fixed sample of requests, no stability search (it rarely settles on a 2-core CPU)
    assert pairs["--request-count"] == str(run_perf.DEFAULT_REQUESTS) == "10"
    assert "--measurement-mode" not in cmd and "--stability-percentage" not in cmd
    assert "--verbose-csv" in cmd and cmd[-3:] == [
        "--collect-metrics",
        "--metrics-url",
        "http://127.0.0.1:9002/metrics",
    ]
    with pytest.raises(ValueError):
        run_perf.build_command("/pa", run_perf.PerfPoint("online", 0), csv_path="x", input_data="y")


def test_build_command_sample_covers_the_concurrency_and_windows_mode():
    big = run_perf.build_command("/pa", run_perf.PerfPoint("offline", 16), csv_path="c", input_data="d")
    assert big[big.index("--request-count") + 1] == "16", "at least one request per client"
    windows = run_perf.build_command(
        "/pa", run_perf.PerfPoint("online", 1), csv_path="c", input_data="d", requests=0, max_trials=5
    )
    pairs = dict(zip(windows[1::2], windows[2::2], strict=False))
    assert "--request-count" not in windows and pairs["--measurement-mode"] == "count_windows"
    assert pairs["--measurement-request-count"] == "10" and pairs["--max-trials"] == "5"
    assert pairs["--stability-percentage"] == str(run_perf.DEFAULT_STABILITY_PERCENTAGE)
    with pytest.raises(ValueError, match="max_trials >= 3"):
        run_perf.build_command(
            "/pa", run_perf.PerfPoint("online", 1), csv_path="c", input_data="d", requests=0, max_trials=2
        )


def test_summary_line_in_seconds():
    row = {"scenario": "online", "Concurrency": "1", "Inferences/Second": "0.19", "p50 latency": "4100000"}
    assert run_perf.summary_line({**row, "p95 latency": "10600000"}) == (
        "online c=1: 0.190 video/s, p50 4.1 s, p95 10.6 s"
    )


def test_points_and_csv_names():
    points = run_perf.sweep_points(["online", "offline"])
    assert [(p.scenario, p.concurrency) for p in points] == [
        ("online", 1),
        ("online", 2),
        ("offline", 4),
        ("offline", 8),
    ]
    assert [p.concurrency for p in run_perf.sweep_points(["online"], [3, 5])] == [3, 5]
    assert run_perf.csv_name(points[1]) == "online_b1_c2.csv"
    assert run_perf.parse_csv_name("offline_b1_c8.csv") == run_perf.PerfPoint("offline", 8, 1)
    with pytest.raises(ValueError):
        run_perf.parse_csv_name("merged.csv")
    with pytest.raises(ValueError, match="unknown scenario"):
        run_perf.sweep_points(["burst"])


def _write_point(folder: Path, name: str, concurrency: int, ips: float) -> None:
    (folder / name).write_text(f"{HEADER}\n{concurrency},{ips},10,100,110,120,130,105\n")


def test_merge_csvs(tmp_path):
    _write_point(tmp_path, "online_b1_c2.csv", 2, 0.5)
    _write_point(tmp_path, "online_b1_c1.csv", 1, 0.25)
    _write_point(tmp_path, "offline_b1_c4.csv", 4, 0.75)
    (tmp_path / "notes.csv").write_text("ignored,file\n1,2\n")
    rows = run_perf.merge_csvs(tmp_path, tmp_path / "out" / "merged.csv")
    assert [(r["scenario"], r["Concurrency"], r["Inferences/Second"]) for r in rows] == [
        ("offline", "4", "0.75"),
        ("online", "1", "0.25"),
        ("online", "2", "0.5"),
    ]
    text = (tmp_path / "out" / "merged.csv").read_text().splitlines()
    assert text[0] == "scenario,batch_size," + HEADER and len(text) == 4


def test_merge_rejects_empty_and_mismatched(tmp_path):
    with pytest.raises(ValueError, match="no per-point CSV"):
        run_perf.merge_csvs(tmp_path, tmp_path / "m.csv")
    (tmp_path / "online_b1_c1.csv").write_text(HEADER + "\n")
    with pytest.raises(ValueError, match="no measurement row"):
        run_perf.merge_csvs(tmp_path, tmp_path / "m.csv")
    _write_point(tmp_path, "online_b1_c1.csv", 1, 1.0)
    (tmp_path / "online_b1_c2.csv").write_text("Concurrency,Other\n2,3\n")
    with pytest.raises(ValueError, match="header differs"):
        run_perf.merge_csvs(tmp_path, tmp_path / "m.csv")


def test_input_data_is_base64_of_the_raw_bytes_with_shape(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00\x01binary\xff")
    out = make_input_data.write_input_data([video, video], tmp_path / "d" / "in.json")
    doc = json.loads(out.read_text())
    assert len(doc["data"]) == 2
    entry = doc["data"][0]["VIDEO"]
    assert base64.b64decode(entry["b64"]) == video.read_bytes() and entry["shape"] == [9]
    with pytest.raises(ValueError):
        make_input_data.input_entry(b"")


def test_get_perf_analyzer_extracts_only_the_binary_and_links_libs(tmp_path):
    wheel = tmp_path / "tritonclient-2.51.0-py3-none-manylinux1_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(get_perf_analyzer.WHEEL_MEMBER, b"\x7fELF fake")
        zf.writestr("tritonclient/__init__.py", "")
    binary = get_perf_analyzer.extract_binary(wheel, tmp_path / "bin")
    assert binary.read_bytes() == b"\x7fELF fake" and binary.stat().st_mode & 0o111
    assert [p.name for p in (tmp_path / "bin").iterdir()] == ["perf_analyzer"]
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "libb64-98cb6333.so.0d").write_bytes(b"b64")
    (libs / "libcudart-09529672.so.12.6.77").write_bytes(b"cudart")
    links = get_perf_analyzer.link_libraries(libs, tmp_path / "lib")
    assert links["libb64.so.0d"].read_bytes() == b"b64" and links["libcudart.so.12"].is_symlink()
    (libs / "libb64-98cb6333.so.0d").unlink()
    with pytest.raises(FileNotFoundError, match="libb64"):
        get_perf_analyzer.link_libraries(libs, tmp_path / "lib2")
