"""One-command GPU check of the deployment: every measurement a lent GPU should give, in one JSON.

Run on a GPU machine through ``benchmarks/gpu/check.sh`` (which unpacks the carried wheels first), or here with
``--dry-run`` to exercise the same orchestration on the CPU::

    python benchmarks/gpu/check.py --out outputs/gpu_check.json                    # on a GPU
    python benchmarks/gpu/check.py --dry-run --out /tmp/gpu_check.json             # CPU: same steps, smaller

Steps, in the order that tells most first (each has a time cap, the caps sum to the budget; failures are
recorded and the next step runs; the JSON under ``$OUT`` is rewritten after each step and during the long ones,
so a cut-off run still returns every figure measured so far):

1. ``env``: machine, GPU, driver and package versions; which numpy every import gets (file and version), and
   whether each third-party module of the check's import closure (``closure.py``) imports.
2. ``cuda_tests``: ``pytest -m needs_cuda`` over the test files that have such tests.
3. ``decode``: the service's decode step as the ``video_decode`` model runs it (:class:`GpuVideoDecoder`:
   probe, NVDEC on the sampled frames, PyAV for streams NVDEC refuses) on the shared clips, against PyAV's
   :func:`decode_sampled` on the same clips: videos/s, ms per clip, which path each clip took, pixel agreement,
   and whether the NVDEC pipeline could be built at all (``nvdec``: else why, and every clip went to PyAV).
4. ``pipeline``: the in-process pipeline on CUDA (demo checkpoint), fp32 and fp16 (autocast), in videos/s,
   with PyAV decoding (``Predictor.predict``) and with the GPU decode step; one CPU fp32 pass as reference.
5. ``agreement``: per clip, GPU vs CPU: P(fake) within 0.02 and the same identities (count, status).
6. ``perf``: ``mintime serve --config-name gpu`` (the pip-installed tritonserver) under perf_analyzer at
   concurrency 1, 4 and 16 over the shared clips: videos/s (one GPU) and latency percentiles.
7. ``stages``: ``bench_pipeline.py`` on CUDA (seconds per stage), if time is left.

``--plan`` prints the step plan (caps, the CPU seconds of the last dry run) and exits.

``--dry-run`` (no GPU needed): device ``cpu`` everywhere, DALI's CPU decoder in place of NVDEC (H.264 then
takes the PyAV fallback), fp32 only, one pass, perf at concurrency 1 on the default (CPU) configs. Its
figures are not GPU figures; the JSON says ``"dry_run": true``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("gpu_check")

SCHEMA = "mintime.gpu_check.v1"
#: (step, cap in seconds on the GPU machine, what it measures), in run order. The caps sum to the default
#: --budget-s; check.sh's unpacking and install come on top (~30-60 s), the machine's start before it.
PLAN: tuple[tuple[str, int, str], ...] = (
    ("env", 20, "versions, the numpy every import gets, the import closure"),
    ("cuda_tests", 90, "pytest -m needs_cuda (DALI NVDEC, CUDA MTCNN, face stage on CUDA)"),
    ("decode", 40, "NVDEC decode step vs PyAV: videos/s, path per clip, pixels"),
    ("pipeline", 90, "in-process pipeline: CPU fp32 reference, CUDA fp32, fp16, GPU decode"),
    ("agreement", 5, "GPU vs CPU: P(fake) within 0.02, same identities"),
    ("perf", 135, "gpu variant under perf_analyzer, concurrency 1/4/16: videos/s per GPU"),
    ("stages", 40, "bench_pipeline on CUDA: seconds per stage (if time is left)"),
)
STEPS = tuple(name for name, _, _ in PLAN)
CAPS = {name: cap for name, cap, _ in PLAN}
#: Triton's CUDA memory pool for the perf step's server: the GPU tensors in flight between the Python models
#: (docker/entrypoint.sh's MINTIME_CUDA_POOL_MB default, 2048).
CUDA_POOL_BYTES = 2048 * 1024 * 1024
#: Agreement criterion between GPU and CPU runs of the pipeline.
MAX_PROB_DIFF = 0.02
PERF_CONCURRENCY = (1, 4, 16)


class Budget:
    """A wall-clock deadline shared by the steps, and the running step's own cap."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.step_end = self.end

    def start_step(self, cap: float | None) -> None:
        self.step_end = self.end if cap is None else min(self.end, time.monotonic() + cap)

    def left(self) -> float:
        return min(self.end, self.step_end) - time.monotonic()

    def check(self, what: str, need: float = 0.0) -> None:
        if self.left() < need:
            raise TimeoutError(f"out of time before {what} ({self.left():.0f} s left, {need:.0f} s needed)")


class Check:
    """Runs the steps and keeps the report (written after every step)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dry = bool(args.dry_run)
        self.device = "cpu" if self.dry else "cuda"
        self.budget = Budget(args.budget_s)
        self.state: dict[str, Any] = {}
        self.report: dict[str, Any] = {
            "schema": SCHEMA,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "dry_run": self.dry,
            "argv": sys.argv[1:],
            "steps": {},
            "summary": {},
        }

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def write(self) -> None:
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        os.replace(tmp, out)

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"status": "ok", "seconds": 0.0, "error": None, "result": None}
        self.current = entry
        cap = None if self.dry else CAPS.get(name)
        self.budget.start_step(None)
        logger.info("== %s (%.0f s left, cap %s s)", name, self.budget.left(), cap)
        entry["status"] = "running"
        self.report["steps"][name] = entry
        self.write()
        try:
            self.budget.check(name, need=5.0)
            self.budget.start_step(cap)
            entry["result"] = fn()
            entry["status"] = "ok"
        except TimeoutError as exc:
            entry.update(status="skipped", error=str(exc))
        except Exception as exc:  # a failed step is recorded; the next one runs
            entry.update(
                status="failed", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-4000:]
            )
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        self.report["steps"][name] = entry
        logger.info(
            "   %s in %.1f s%s",
            entry["status"],
            entry["seconds"],
            f": {entry['error']}" if entry["error"] else "",
        )
        self.write()

    def partial(self, result: dict[str, Any]) -> None:
        """Record what the running step measured so far (kept if the step is cut off) and write the JSON."""
        self.current["partial"] = result
        self.write()

    # -- inputs -----------------------------------------------------------------------------------------------
    def clips(self) -> list[Path]:
        """The clips measured: the .mp4/.webm files of ``--videos`` (first ``--max-clips``); a dry run adds a
        VP9 copy of the first one, which DALI's CPU decoder (NVDEC's stand-in there) decodes."""
        if "clips" in self.state:
            return self.state["clips"]
        found = sorted(p for p in Path(self.args.videos).iterdir() if p.suffix in (".mp4", ".webm"))
        if not found:
            raise FileNotFoundError(f"no .mp4/.webm clips in {self.args.videos}")
        found = found[: self.args.max_clips] if self.args.max_clips else found
        if self.dry and not any(p.suffix == ".webm" for p in found):
            from tests.helpers.media import transcode

            work = Path(tempfile.mkdtemp(prefix="gpu_check_clips_"))
            found.append(transcode(found[0], work / f"{found[0].stem}_vp9.webm", "libvpx-vp9", max_frames=30))
        self.state["clips"] = found
        return found

    # -- steps ------------------------------------------------------------------------------------------------
    def step_env(self) -> dict[str, Any]:
        import numpy as np
        import torch

        info: dict[str, Any] = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(),
            "numpy": np.__version__,
        }
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info.update(
                gpu=props.name,
                gpu_memory_gib=round(props.total_memory / 2**30, 1),
                compute_capability=f"{props.major}.{props.minor}",
            )
        elif not self.dry:
            raise RuntimeError("no CUDA device: run with --dry-run on a machine without a GPU")
        import importlib
        import importlib.metadata as md

        for dist in ("nvidia-dali-cuda130", "nvidia-pytriton", "tritonclient", "av", "opencv-python-headless",
                     "dlib-bin", "onnxruntime", "scipy", "ml-dtypes"):  # fmt: skip
            try:
                info[dist] = md.version(dist)
            except md.PackageNotFoundError:
                info[dist] = "missing"
        info["numpy_file"] = np.__file__
        # every third-party module the check (and the server's models) imports, imported now, with this numpy
        from benchmarks.gpu.closure import OPTIONAL, PROVIDED, roots, third_party_modules

        imports: dict[str, str] = {}
        for module in sorted(third_party_modules(roots())):
            if module in OPTIONAL or module in PROVIDED:
                continue
            try:
                importlib.import_module(module)
                imports[module] = "ok"
            except Exception as exc:  # noqa: BLE001 - reported, the steps that need it will fail
                imports[module] = f"{type(exc).__name__}: {str(exc)[:200]}"
        info["imports"] = imports
        info["imports_failed"] = sorted(m for m, v in imports.items() if v != "ok")
        info["nvidia.dali"] = info["nvidia-dali-cuda130"]
        smi = shutil.which("nvidia-smi")
        if smi:
            q = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            info["nvidia_smi"] = q.stdout.strip()
        self.report["machine"] = {
            k: info.get(k) for k in ("gpu", "gpu_memory_gib", "nvidia_smi", "cpus", "python")
        }
        return info

    def step_cuda_tests(self) -> dict[str, Any]:
        from benchmarks.gpu.closure import CUDA_TESTS_EXCLUDED, cuda_test_files

        files = [str(p.relative_to(REPO)) for p in cuda_test_files(REPO)]
        timeout = max(self.budget.left() - 5, 10)
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "needs_cuda", "-p", "no:cacheprovider", *files]
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
            text, code = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:  # what ran is still reported
            out = exc.stdout or b""
            text = (
                out.decode(errors="replace") if isinstance(out, bytes) else out
            ) + f"\n[cut at {timeout:.0f} s]"
            code = -1
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text)}
        failed = re.findall(r"^FAILED (\S+)", text, flags=re.M)
        result = {"returncode": code, "files": files, "excluded": CUDA_TESTS_EXCLUDED, "counts": counts,
                  "failed": failed, "tail": text[-3000:]}  # fmt: skip
        if code not in (0, 5):  # 5: nothing selected
            self.partial(result)
            raise AssertionError(f"needs_cuda tests failed (exit {code}): {failed or text[-500:]}")
        return result

    def step_decode(self) -> dict[str, Any]:
        import numpy as np

        from dali_pipelines.video_decode import GpuVideoDecoder
        from mintime.video import decode_sampled

        decoder = GpuVideoDecoder(device_id=0, device="cpu" if self.dry else "mixed")
        nvdec = "available" if decoder.prepare() else f"unavailable: {decoder.unavailable} (every clip: PyAV)"
        repeats = 1 if self.dry else self.args.repeats
        per_clip, t_step, t_pyav = [], 0.0, 0.0
        for path in self.clips():
            self.budget.check(f"decode {path.name}", need=10)
            data = path.read_bytes()
            clip = decoder(data, self.args.num_frames)  # warm-up (builds the pipeline on first use)
            t0 = time.perf_counter()
            for _ in range(repeats):
                clip = decoder(data, self.args.num_frames)
            step_s = (time.perf_counter() - t0) / repeats
            t0 = time.perf_counter()
            for _ in range(repeats):
                ref = decode_sampled(data, self.args.num_frames)
            pyav_s = (time.perf_counter() - t0) / repeats
            t_step, t_pyav = t_step + step_s, t_pyav + pyav_s
            same = clip.frames.shape == ref.frames.shape
            diff = (
                float(np.abs(clip.frames.astype(np.int16) - ref.frames.astype(np.int16)).mean())
                if same
                else None
            )
            per_clip.append(
                {
                    "clip": path.name,
                    "path": decoder.last_path,
                    "ms_decode_step": round(step_s * 1e3, 1),
                    "ms_pyav": round(pyav_s * 1e3, 1),
                    "indices_equal": bool(np.array_equal(clip.indices, ref.indices)),
                    "shape": list(clip.frames.shape),
                    "fps": clip.fps,
                    "rotation": clip.rotation,
                    "mean_abs_diff_vs_pyav": None if diff is None else round(diff, 3),
                }
            )
            self.partial({"nvdec": nvdec, "clips": per_clip})
        n = len(per_clip)
        self.state["decoder"] = decoder
        return {
            "device": decoder.device,
            "nvdec": nvdec,
            "num_frames": self.args.num_frames,
            "repeats": repeats,
            "clips": per_clip,
            "videos_per_s_decode_step": round(n / t_step, 2),
            "videos_per_s_pyav": round(n / t_pyav, 2),
            "paths": dict(decoder.counts),
        }

    def _predict_all(
        self, predictor: Any, decode: Callable[[bytes], Any] | None, amp: bool
    ) -> tuple[list, float]:
        """Results per clip and wall seconds per pass (the last of ``passes`` timed passes after a warm-up)."""
        import contextlib

        import torch

        from mintime.explain import render_result

        def one(data: bytes) -> dict[str, Any]:
            ctx = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
            with ctx:
                if decode is None:
                    return predictor.predict(data)
                faces = predictor.stage(decode(data))
                return render_result(faces.to_json(), predictor.explain(faces), predictor.model)

        datas = [p.read_bytes() for p in self.clips()]
        one(datas[0])  # warm-up: weights on the device, cuDNN/cuBLAS handles, DALI pipeline
        passes = 1 if self.dry else self.args.passes
        results: list = []
        t0 = time.perf_counter()
        for _ in range(passes):
            self.budget.check("pipeline pass", need=15)
            results = [one(d) for d in datas]
        if self.device == "cuda":
            torch.cuda.synchronize()
        return results, (time.perf_counter() - t0) / passes

    def step_pipeline(self) -> dict[str, Any]:
        from mintime.config import PipelineConfig
        from mintime.engines import TorchEngines
        from mintime.networks import load_networks
        from mintime.pipeline import Predictor

        n = len(self.clips())
        out: dict[str, Any] = {"clips": n, "num_frames": self.args.num_frames}
        runs: dict[str, list] = {}
        variants = [("cpu_fp32", "cpu", False, False)]
        variants += (
            [("cuda_fp32", "cuda", False, False), ("cuda_fp16", "cuda", True, False)] if not self.dry else []
        )
        variants += (
            [("cuda_fp32_gpu_decode", "cuda", False, True)]
            if not self.dry
            else [("cpu_fp32_dali_decode", "cpu", False, True)]
        )
        for name, device, amp, gpu_decode in variants:
            self.budget.check(f"pipeline {name}", need=20)
            nets = load_networks()
            cfg = PipelineConfig(num_frames=self.args.num_frames, device=device)
            predictor = Predictor(
                cfg, TorchEngines(nets.backbone, nets.head, device=device), model=nets.model
            )
            decode = None
            if gpu_decode:
                decoder = self.state.get("decoder")
                if decoder is None:
                    from dali_pipelines.video_decode import GpuVideoDecoder

                    decoder = GpuVideoDecoder(device_id=0, device="cpu" if self.dry else "mixed")
                decode = lambda data, d=decoder: d(data, self.args.num_frames)  # noqa: E731
            results, seconds = self._predict_all(predictor, decode, amp)
            runs[name] = results
            out[name] = {"seconds_per_pass": round(seconds, 3), "videos_per_s": round(n / seconds, 3)}
            self.partial(dict(out))
        self.state["runs"] = runs
        self.state["clip_names"] = [p.name for p in self.clips()]
        return out

    def step_agreement(self) -> dict[str, Any]:
        runs = self.state.get("runs")
        if not runs or "cpu_fp32" not in runs:
            raise RuntimeError("the pipeline step produced no CPU reference")
        ref = runs["cpu_fp32"]
        report: dict[str, Any] = {"max_prob_diff_allowed": MAX_PROB_DIFF, "runs": {}}
        all_ok = True
        for name, results in runs.items():
            if name == "cpu_fp32":
                continue
            rows = []
            for clip, a, b in zip(self.state["clip_names"], ref, results, strict=True):
                pa, pb = a.get("fake_probability"), b.get("fake_probability")
                diff = None if pa is None or pb is None else abs(pa - pb)
                ids_a, ids_b = len(a.get("identities", [])), len(b.get("identities", []))
                ok = (
                    (pa is None) == (pb is None)
                    and (diff is None or diff <= MAX_PROB_DIFF)
                    and ids_a == ids_b
                )
                ok = ok and a.get("status") == b.get("status")
                all_ok &= ok
                rows.append(
                    {"clip": clip, "p_fake_cpu": pa, "p_fake": pb, "diff": diff, "identities_cpu": ids_a,
                     "identities": ids_b, "status": b.get("status"), "ok": ok}
                )  # fmt: skip
            report["runs"][name] = rows
        report["all_ok"] = all_ok
        if not all_ok:
            raise AssertionError(f"GPU and CPU disagree: {json.dumps(report['runs'])[:1500]}")
        return report

    def step_stages(self) -> dict[str, Any]:
        """``benchmarks/bench_pipeline.py --device cuda``: seconds per stage, device face stage vs dlib."""
        import tempfile

        device = "cpu" if self.dry else "cuda"
        timeout = max(self.budget.left() - 5, 10)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "stages.json"
            cmd = [sys.executable, str(REPO / "benchmarks" / "bench_pipeline.py"), "--device", device,
                   "--clips", str(self.args.videos), "--num-frames", str(self.args.num_frames),
                   "--json", str(out)]  # fmt: skip
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                raise AssertionError(f"bench_pipeline failed: {(proc.stdout + proc.stderr)[-800:]}")
            report = json.loads(out.read_text())
        return {"device": device, "summary": report["summary"], "table": proc.stdout[-4000:]}

    def step_perf(self) -> dict[str, Any]:
        import csv

        from benchmarks.perf.make_input_data import write_input_data
        from benchmarks.perf.run_perf import find_perf_analyzer
        from mintime.serving.server import TritonServer, free_port

        binary, env = find_perf_analyzer()
        work = Path(tempfile.mkdtemp(prefix="gpu_check_perf_"))
        data = write_input_data(self.clips(), work / "videos.json")
        config = None if self.dry else "gpu"
        levels = (1,) if self.dry else PERF_CONCURRENCY
        server = TritonServer(
            REPO / "model_repository",
            grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
            config_name=config, log_path=work / "tritonserver.log",
            startup_timeout=min(300, max(self.budget.left() - 60, 30)),
            extra_args=[] if self.dry else [f"--cuda-memory-pool-byte-size=0:{CUDA_POOL_BYTES}"],
        )  # fmt: skip
        points = []
        with server:
            for c in levels:
                self.budget.check(f"perf concurrency {c}", need=30)
                csv_path = work / f"c{c}.csv"
                cmd = perf_command(binary, c, csv_path=csv_path, input_data=data, url=server.grpc_url,
                                   metrics_url=server.metrics_url, dry=self.dry)  # fmt: skip
                proc = subprocess.run(
                    cmd, env=env, capture_output=True, text=True, timeout=max(self.budget.left() - 20, 10)
                )
                row: dict[str, Any] = {"concurrency": c, "returncode": proc.returncode}
                if proc.returncode == 0 and csv_path.is_file():
                    rec = next(csv.DictReader(open(csv_path)))
                    row.update(
                        videos_per_s=float(rec["Inferences/Second"]),
                        **{
                            k.replace(" ", "_"): float(rec[k]) / 1e3
                            for k in rec
                            if k in ("p50 latency", "p90 latency", "p99 latency")
                        },
                    )  # latencies: perf_analyzer writes microseconds; ms here
                else:
                    row["error"] = (proc.stdout + proc.stderr)[-800:]
                points.append(row)
                self.partial({"config_name": config or "default", "points": points, "latency_unit": "ms"})
            log_tail = server.log_tail(20)
        ok = [p for p in points if "videos_per_s" in p]
        if not ok:
            raise RuntimeError(f"perf_analyzer measured nothing: {points}; {log_tail}")
        return {
            "config_name": config or "default",
            "clips": len(self.clips()),
            "points": points,
            "latency_unit": "ms",
        }

    # -- all --------------------------------------------------------------------------------------------------
    def summarize(self) -> None:
        steps = self.report["steps"]
        s: dict[str, Any] = {"steps_ok": [k for k, v in steps.items() if v["status"] == "ok"]}
        dec = (steps.get("decode") or {}).get("result") or {}
        if dec:
            s["decode_videos_per_s"] = dec.get("videos_per_s_decode_step")
            s["pyav_videos_per_s"] = dec.get("videos_per_s_pyav")
            s["decode_paths"] = dec.get("paths")
            s["nvdec"] = dec.get("nvdec")
        pipe = (steps.get("pipeline") or {}).get("result") or {}
        for k, v in pipe.items():
            if isinstance(v, dict) and "videos_per_s" in v:
                s[f"pipeline_{k}_videos_per_s"] = v["videos_per_s"]
        perf = (steps.get("perf") or {}).get("result") or {}
        for p in perf.get("points", []):
            if "videos_per_s" in p:
                s[f"serve_c{p['concurrency']}_videos_per_s"] = p["videos_per_s"]
        agree = (steps.get("agreement") or {}).get("result") or {}
        if agree:
            s["gpu_cpu_agreement"] = agree.get("all_ok")
        env = (steps.get("env") or {}).get("result") or {}
        if env:
            s["numpy"] = f"{env.get('numpy')} ({env.get('numpy_file')})"
            s["imports_failed"] = env.get("imports_failed")
        self.report["summary"] = s
        self.report["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.write()

    def main(self) -> int:
        if self.args.plan:
            print(plan_text(self.args.budget_s, self.args.out))
            return 0
        for name in [n for n in STEPS if n in self.args.steps]:
            self.run(name, getattr(self, f"step_{name}"))
        self.summarize()
        failed = [k for k, v in self.report["steps"].items() if v["status"] == "failed"]
        logger.info("wrote %s; failed steps: %s", self.args.out, failed or "none")
        return 1 if failed else 0


def perf_command(
    binary: str | os.PathLike, concurrency: int, *, csv_path: Path, input_data: Path, url: str,
    metrics_url: str | None, dry: bool = False,
) -> list[str]:  # fmt: skip
    """perf_analyzer's argv for one concurrency level: a fixed sample of requests (2 per concurrent slot, at least
    4; 2 in a dry run), no stability search (it would not settle in the time a level has)."""
    from benchmarks.perf.run_perf import PerfPoint, build_command

    count = 2 if dry else max(2 * concurrency, 4)
    return build_command(binary, PerfPoint("gpucheck", concurrency), csv_path=csv_path, input_data=input_data,
                         url=url, requests=count, metrics_url=metrics_url)  # fmt: skip


def plan_text(budget_s: float, last: Path | None = None) -> str:
    """The step plan: each step's cap on the GPU machine and, where a report exists at ``last`` (the last dry
    run), its seconds there on the CPU."""
    seconds: dict[str, Any] = {}
    if last is not None and Path(last).is_file():
        try:
            seconds = {k: v.get("seconds") for k, v in json.loads(Path(last).read_text())["steps"].items()}
        except (ValueError, KeyError):
            seconds = {}
    lines = [f"{'step':<11} {'cap (GPU)':>9} {'last CPU run':>12}  what"]
    for name, cap, what in PLAN:
        cpu = seconds.get(name)
        cpu_text = "-" if cpu is None else f"{cpu:.0f} s"
        lines.append(f"{name:<11} {cap:>7} s {cpu_text:>12}  {what}")
    total = sum(CAPS.values())
    lines.append(
        f"{'total':<11} {total:>7} s  (--budget-s {budget_s:.0f}: steps past it are skipped, figures so far kept)"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="One-command GPU check of the MINTIME deployment (one JSON)."
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "outputs")) / "gpu_check.json")
    parser.add_argument("--dry-run", action="store_true", help="CPU only: exercise the orchestration")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument("--videos", type=Path, default=REPO.parent / "shared" / "data" / "videos")
    parser.add_argument("--max-clips", type=int, default=0, help="use only the first N clips (0: all)")
    parser.add_argument(
        "--num-frames", type=int, default=16, help="frames sampled per video (the service's 16)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes per clip")
    parser.add_argument("--passes", type=int, default=2, help="timed pipeline passes over the clips")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=float(sum(CAPS.values())),
        help="wall-clock budget of the whole check",
    )
    parser.add_argument("--plan", action="store_true", help="print the step plan and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    return Check(parse_args(argv)).main()


if __name__ == "__main__":
    sys.exit(main())
