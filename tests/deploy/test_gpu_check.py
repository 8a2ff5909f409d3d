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
    import numpy

    assert env["numpy_file"] == numpy.__file__
    # facenet-pytorch imports torchvision, whose only wheel for torch 2.13 fails on a CPU torch (environment.md);
    # the device's torchvision 0.26 matches its torch 2.11
    assert set(env["imports_failed"]) <= {"facenet_pytorch"}, env["imports_failed"]
    assert {"av", "cv2", "nvidia.dali", "scipy", "torch", "tritonclient.grpc"} <= set(env["imports"])
    decode = report["steps"]["decode"]["result"]
    assert decode["nvdec"] == "available"  # DALI's CPU decoder builds here (NVDEC's stand-in)
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
    plan = (tmp_path / "out" / "gpu_carry.txt").read_text()  # --dry-run shows the carry and the step plan
    assert plan.startswith("carry: ") and "cap (GPU)" in plan and "total" in plan


# --- one numpy on the device: the check's import closure against the device's packages plus the bundle ----------

from benchmarks.gpu import carry, closure  # noqa: E402
from benchmarks.gpu.check import CAPS, PLAN  # noqa: E402

needs_bundle_tool = pytest.mark.skipif(
    not closure.GPU_BUNDLE.is_file(), reason=f"the shared wheel-bundle tool is not at {closure.GPU_BUNDLE}"
)


def test_the_pip_servers_python_backend_stub_needs_numpy_1(tmp_path: Path):
    """nvidia-pytriton 0.7.0's stub for the device's Python 3.12 has a pybind11 without numpy 2 support."""
    assert closure.stub_numpy_major(closure.pytriton_stub("3.12")) == 1
    new, old = tmp_path / "new", tmp_path / "old"
    new.write_bytes(b"\0pybind11 numpy._core.multiarray\0")
    old.write_bytes(b"\0numpy.core.multiarray\0")
    assert (closure.stub_numpy_major(new), closure.stub_numpy_major(old)) == (2, 1)


@needs_bundle_tool
def test_the_checks_imports_resolve_with_one_numpy_on_the_device():
    res = closure.resolve()
    assert res.ok, {"missing": res.missing, "conflicts": res.conflicts}
    assert res.numpy == "1.26.4" and res.stub_numpy_major == 1
    assert res.sources["numpy"] == "bundle 1.26.4"
    for dist in (
        "opencv-python-headless",
        "scipy",
        "ml-dtypes",
        "av",
        "nvidia-dali-cuda130",
        "nvidia-pytriton",
    ):
        assert res.sources.get(dist, "").startswith("bundle "), (dist, res.sources.get(dist))
    assert res.sources["torch"] == "device 2.11.0"
    modules = closure.third_party_modules(closure.roots())
    assert "mintime/faces/tracklets.py" in modules["scipy"], "lazy and module-level imports are both found"


@needs_bundle_tool
def test_the_closure_catches_a_numpy_2_package_or_a_missing_one():
    bundle = closure.bundle_requirements()
    without = lambda name: [r for r in bundle if r.name != name]  # noqa: E731
    res = closure.resolve(
        bundle=without("scipy")
    )  # the device's scipy: built for its numpy 2.x, version unread
    assert any(
        c.startswith("scipy: the device's build (version not read) requires numpy") for c in res.conflicts
    )
    res = closure.resolve(bundle=without("av"))
    assert any(m.startswith("av: neither in the bundle nor on the device") for m in res.missing)
    from packaging.requirements import Requirement

    res = closure.resolve(bundle=[*without("numpy"), Requirement("numpy==2.3.1")])
    assert any("the pip tritonserver's Python-backend stub needs numpy 1.x" in c for c in res.conflicts)
    assert any(c.startswith("facenet-pytorch 2.6.0 (bundle) requires numpy") for c in res.conflicts)


def test_the_plan_puts_the_telling_steps_first_and_fits_eight_minutes():
    assert [name for name, _, _ in PLAN][:6] == [
        "env",
        "cuda_tests",
        "decode",
        "pipeline",
        "agreement",
        "perf",
    ]
    assert sum(CAPS.values()) + carry.INSTALL_S <= 8 * 60
    proc = _run(["--plan"], timeout=60)
    assert proc.returncode == 0 and f"{'total':<11} {sum(CAPS.values()):>7} s" in proc.stdout


def test_parts_are_packed_into_calls_under_the_limit(tmp_path: Path):
    parts = []
    for name, mib in [
        ("p00", 14),
        ("p01", 14),
        ("p02", 14),
        ("p03", 14),
        ("p04", 6),
        ("x00", 14),
        ("x01", 3),
    ]:
        p = tmp_path / name
        with open(p, "wb") as f:
            f.truncate(mib * carry.MIB)  # sparse: only the size matters
        parts.append(p)
    calls = carry.pack(parts, room_mib=57.8)
    assert [[p.name for p in c.parts] for c in calls] == [["p00", "p01", "p02", "p03"], ["p04", "x00", "x01"]]
    assert calls[-1].last and not calls[0].last
    cmd = carry.command(calls[1], "benchmarks/gpu/check.sh")
    assert cmd == ("cat .gpu/parts/p04 >> /tmp/bundle.tar && cat .gpu/parts/x00 > /tmp/extra.tar && "
                   "cat .gpu/parts/x01 >> /tmp/extra.tar && benchmarks/gpu/check.sh")  # fmt: skip
    with pytest.raises(ValueError, match="more than a call can carry"):
        carry.pack(parts, room_mib=10)


def test_the_perf_step_builds_a_valid_perf_analyzer_command(tmp_path: Path):
    """The perf step's command, built as the step builds it (it once passed arguments build_command lacked)."""
    from benchmarks.gpu.check import perf_command

    cmd = perf_command("/bin/pa", 16, csv_path=tmp_path / "c16.csv", input_data=tmp_path / "v.json",
                       url="127.0.0.1:8001", metrics_url="http://127.0.0.1:8002/metrics")  # fmt: skip
    text = " ".join(cmd)
    assert "--concurrency-range 16:16" in text and "--request-count 32" in text
    assert (
        "-u 127.0.0.1:8001" in text and "--collect-metrics" in text and "--stability-percentage" not in text
    )
    dry = perf_command("/bin/pa", 1, csv_path=tmp_path / "c1.csv", input_data=tmp_path / "v.json",
                       url="127.0.0.1:8001", metrics_url=None, dry=True)  # fmt: skip
    assert "--request-count 2" in " ".join(dry)
