"""benchmarks/gpu/check.py and check.sh on the CPU (--dry-run): the steps run for real on small synthetic
clips, the JSON has what a GPU session reports, a failing step is recorded without stopping the others, the
time budget is honoured, and check.sh unpacks carried parts and refuses a broken one."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("nvidia.dali")
pytest.importorskip("av")

CHECK = REPO / "benchmarks" / "gpu" / "check.py"
CHECK_SH = REPO / "benchmarks" / "gpu" / "check.sh"


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An H.264 clip (DALI's CPU decoder lacks H.264: the PyAV fallback) and a VP9 clip (the DALI path)."""
    from tests.helpers.media import make_clip

    d = tmp_path_factory.mktemp("gpu_check_clips")
    make_clip(d / "a_h264.mp4", frames=12, size=(96, 64))
    make_clip(d / "b_vp9.webm", frames=12, size=(96, 64), codec="libvpx-vp9")
    return d


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True, env=env, **kw)


def test_dry_run_measures_every_in_process_step(tiny_clips: Path, tmp_path: Path):
    out = tmp_path / "gpu_check.json"
    steps = ["env", "decode", "pipeline", "agreement"]
    proc = _run(["--dry-run", "--out", str(out), "--videos", str(tiny_clips), "--num-frames", "4",
                 "--steps", *steps], timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["schema"] == "mintime.gpu_check.v1" and report["dry_run"] is True
    assert [k for k, v in report["steps"].items() if v["status"] == "ok"] == steps
    env = report["steps"]["env"]["result"]
    assert env["cuda_available"] is False and env["nvidia.dali"].startswith("2.")
    decode = report["steps"]["decode"]["result"]
    paths = {c["clip"]: c["path"] for c in decode["clips"]}
    assert paths == {
        "a_h264.mp4": "pyav: DALI's CPU decoder has no h264 (only mjpeg, vp8, vp9)",
        "b_vp9.webm": "dali",
    }
    assert all(c["indices_equal"] and c["shape"] == [4, 64, 96, 3] for c in decode["clips"])
    assert decode["videos_per_s_decode_step"] > 0 and decode["videos_per_s_pyav"] > 0
    pipe = report["steps"]["pipeline"]["result"]
    assert pipe["clips"] == 2 and pipe["cpu_fp32"]["videos_per_s"] > 0 and "cpu_fp32_dali_decode" in pipe
    agreement = report["steps"]["agreement"]["result"]
    assert agreement["all_ok"] and agreement["max_prob_diff_allowed"] == 0.02
    (rows,) = agreement["runs"].values()
    assert [r["clip"] for r in rows] == ["a_h264.mp4", "b_vp9.webm"]
    summary = report["summary"]
    assert summary["gpu_cpu_agreement"] is True and summary["decode_paths"] == {"dali": 2, "pyav": 2}
    assert "finished" in report


def test_a_failing_step_is_recorded_and_the_others_run(tmp_path: Path):
    empty = tmp_path / "no_clips"
    empty.mkdir()
    out = tmp_path / "r.json"
    proc = _run(["--dry-run", "--out", str(out), "--videos", str(empty), "--steps", "env", "decode", "agreement"],
                timeout=300)  # fmt: skip
    assert proc.returncode == 1
    steps = json.loads(out.read_text())["steps"]
    assert steps["env"]["status"] == "ok"
    assert steps["decode"]["status"] == "failed" and "no .mp4/.webm clips" in steps["decode"]["error"]
    assert steps["agreement"]["status"] == "failed" and "no CPU reference" in steps["agreement"]["error"]


def test_the_budget_skips_what_does_not_fit(tmp_path: Path):
    out = tmp_path / "r.json"
    proc = _run(["--dry-run", "--out", str(out), "--budget-s", "2", "--steps", "env", "decode"], timeout=120)
    assert proc.returncode == 0  # skipped is not failed
    steps = json.loads(out.read_text())["steps"]
    assert {s["status"] for s in steps.values()} == {"skipped"}
    assert "out of time before env" in steps["env"]["error"]


def _tar(path: Path, files: dict[str, bytes]) -> str:
    import hashlib

    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_check_sh_unpacks_the_carried_parts_and_refuses_a_broken_one(tiny_clips: Path, tmp_path: Path):
    subprocess.run(["bash", "-n", str(CHECK_SH)], check=True)
    clip = (tiny_clips / "b_vp9.webm").read_bytes()
    extra_sum = _tar(tmp_path / "extra.tar", {"x/videos/b_vp9.webm": clip})
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MINTIME_GPU_TMP": str(tmp_path),
        "OUT": str(tmp_path / "out"),
    }
    bad = subprocess.run(["bash", str(CHECK_SH), "--dry-run"], env={**env, "EXTRA_SHA256": "0" * 64},
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 3 and "checksum mismatch" in bad.stderr
    ok = subprocess.run(["bash", str(CHECK_SH), "--dry-run", "--steps", "env", "decode", "--num-frames", "4"],
                        env={**env, "EXTRA_SHA256": extra_sum}, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["argv"][report["argv"].index("--videos") + 1] == str(tmp_path / "x" / "videos")
    clips = report["steps"]["decode"]["result"]["clips"]
    assert [c["clip"] for c in clips] == ["b_vp9.webm"] and clips[0]["path"] == "dali"
    assert (tmp_path / "out" / "gpu_check.log").is_file()
