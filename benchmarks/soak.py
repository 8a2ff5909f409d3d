"""Soak test: a real `mintime serve` at saturation for a given time, with a mix of good and hostile videos.

    python benchmarks/soak.py --duration 60                    # starts `mintime serve` on a repository copy
    python benchmarks/soak.py --duration 1800 --json outputs/soak/30min.json
    python benchmarks/soak.py --url 127.0.0.1:8001 --server-pid 1234 --duration 600   # a server already running

Good videos (the shared clips when present, a clip without faces, a 4096x2304 clip of flat frames) must be
answered every time, and with the answer they got the first time (``fake_probability`` within 1e-4, same status
and identities). Hostile ones (truncated, random bytes, an unknown codec tag, an 8192x4096 bomb, an input over the
byte limit, an animated GIF, an empty input) must be refused with ``INVALID_ARGUMENT``. ``--concurrency``
requests are kept in flight the whole time. The memory of the server (proportional set size of tritonserver and
its Python-backend stubs, Triton's shared-memory regions included, and apart: its anonymous memory and its
shared memory) is sampled every few seconds and reported at the start, the middle and the end, with the lowest
sample of each sixth of the run (a leak shows as rising minima).

The start sample is taken after a two-part warm-up: every good video once, one at a time (these answers are the
references), then every input, good and hostile, ``--concurrency`` times at once. The second part is there
because the Python backend's shared-memory pools grow once to the largest set of tensors in flight together and
are never shrunk (by Triton's design), and the batched models allocate their working memory for a full batch the
first time one arrives: a start sample taken before any concurrent batch would count that one-time growth as a
leak.

Printed: requests, failures of good requests (must be 0), answers changed (must be 0), hostile requests not
refused with INVALID_ARGUMENT (must be 0), latency, and memory; exit code 1 when one of these is not 0 or the
memory grew by more than ``--max-growth-mb`` between the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = Path(os.environ.get("MINTIME_SHARED", REPO.parent / "shared")) / "data" / "videos"
sys.path.insert(0, str(REPO))


# --- inputs ----------------------------------------------------------------------------------------------------


def _gif(path: Path) -> bytes:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("gif", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "rgb8"
        for n in range(5):
            for packet in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * n, np.uint8))):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path.read_bytes()


def build_inputs(folder: Path, *, max_bytes: int, shared: bool) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(good, hostile) inputs by name."""
    from tests.helpers.media import flat_clip, make_clip

    rng = np.random.default_rng(0)
    noise = make_clip(
        folder / "noise.mp4",
        frames=12,
        size=(160, 120),
        draw=lambda i: rng.integers(0, 256, (120, 160, 3), np.uint8),
    ).read_bytes()
    good = {
        "noise.mp4": noise,
        "flat_4096x2304.mp4": flat_clip(folder / "flat4k.mp4", (4096, 2304), 12, value=128).read_bytes(),
    }
    if shared and SHARED_VIDEOS.is_dir():
        good.update({p.name: p.read_bytes() for p in sorted(SHARED_VIDEOS.glob("*.mp4"))})
    base = good.get("two_people_one_fake_720p.mp4", noise)
    hostile = {
        "truncated": base[: len(base) // 3],
        "random": rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes(),
        "unknown_codec_tag": base.replace(b"avc1", b"xxxx"),
        "bomb_8192x4096": flat_clip(folder / "bomb8k.mp4", (8192, 4096), 33, value=128).read_bytes(),
        "oversized": noise + b"\x00" * (max_bytes + 1 - len(noise)),
        "animated_gif": _gif(folder / "a.gif"),
        "empty": b"",
        "text": b"hello, this is not a video\n" * 100,
    }
    return good, hostile


# --- the server ------------------------------------------------------------------------------------------------


def prepare_repository(source: Path, target: Path, *, num_frames: int | None, max_bytes: int) -> Path:
    """A copy of ``source`` with video_decode's ``num_frames`` and ``max_bytes`` set."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", ".export-*"))
    config = target / "video_decode" / "config.pbtxt"
    text = config.read_text()
    if num_frames:
        text = re.sub(
            r'key: "num_frames" value \{ string_value: "\d+" \}',
            f'key: "num_frames" value {{ string_value: "{num_frames}" }}',
            text,
        )
    text += f'parameters {{ key: "max_bytes" value {{ string_value: "{max_bytes}" }} }}\n'
    config.write_text(text)
    return target


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


#: smaps_rollup fields summed over the server's processes (kB), and the names they are reported under.
_ROLLUP = {"Pss:": "pss_mb", "Pss_Anon:": "anon_mb", "Pss_Shmem:": "shmem_mb"}


def server_memory_mb(pid: int) -> dict[str, float]:
    """Memory of ``pid`` and its descendants, MB: proportional set size (shared pages counted once, Triton's
    shared-memory regions included), its anonymous and shared-memory parts (``Pss_Anon``, ``Pss_Shmem``), and
    the size of the ``/dev/shm`` files they map (for information)."""
    kb, todo, shm = dict.fromkeys(_ROLLUP.values(), 0), [pid], set()
    while todo:
        p = todo.pop()
        todo += _children(p)
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                key = _ROLLUP.get(line.split(maxsplit=1)[0] if line else "")
                if key is not None:
                    kb[key] += int(line.split()[1])
            shm |= {
                ln.split()[-1] for ln in Path(f"/proc/{p}/maps").read_text().splitlines() if "/dev/shm/" in ln
            }
        except OSError:
            pass
    shm_bytes = sum(Path(f).stat().st_size for f in shm if Path(f).is_file())
    return {**{k: round(v / 1024, 1) for k, v in kb.items()}, "shm_files_mb": round(shm_bytes / 1024**2, 1)}


def start_serve(repository: Path, checkpoint: Path | None, log: Path) -> tuple[subprocess.Popen, str, int]:
    """Start ``mintime serve``; returns the process, the gRPC url and tritonserver's pid."""
    from mintime.serving.server import free_port

    grpc, http, metrics = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "mintime.cli", "serve", "--model-repository", str(repository),
           "--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port", str(metrics),
           "--log-file", str(log)]  # fmt: skip
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mintime serve exited with {proc.returncode}; log: {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the server was not ready in 600 s; log: {log}")
        time.sleep(1)
    (triton,) = _children(proc.pid)
    return proc, f"127.0.0.1:{grpc}", triton


# --- the load ----------------------------------------------------------------------------------------------------


def same_answer(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-4) -> bool:
    """Same status, identities and probability (within ``tol``)."""
    if a.get("status") != b.get("status") or len(a.get("identities", [])) != len(b.get("identities", [])):
        return False
    pa, pb = a.get("fake_probability"), b.get("fake_probability")
    if pa is None or pb is None:
        return pa is None and pb is None
    return math.isclose(pa, pb, abs_tol=tol)


async def _infer(client: Any, data: bytes) -> tuple[str, Any]:
    """("ok", result) or (gRPC status, message)."""
    import tritonclient.grpc as grpcclient

    from mintime.contract import ENSEMBLE

    arr = np.frombuffer(data, np.uint8).reshape(1, -1)
    inp = grpcclient.InferInput(ENSEMBLE.inputs[0].name, list(arr.shape), "UINT8")
    inp.set_data_from_numpy(arr)
    try:
        res = await client.infer(
            ENSEMBLE.name, [inp], outputs=[grpcclient.InferRequestedOutput("RESULT_JSON")]
        )
    except Exception as exc:
        status = getattr(exc, "status", None)
        message = getattr(exc, "message", None)
        return (str(status()) if callable(status) else type(exc).__name__), (
            message() if callable(message) else str(exc)
        )
    value = res.as_numpy("RESULT_JSON").reshape(-1)[0]
    return "ok", json.loads(value.decode() if isinstance(value, bytes) else value)


def _new_stats() -> dict[str, int]:
    return {"requests": 0, "good": 0, "good_failed": 0, "changed": 0, "hostile": 0, "hostile_wrong": 0}


async def soak(
    url: str,
    server_pid: int | None,
    good: dict[str, bytes],
    hostile: dict[str, bytes],
    *,
    duration: float,
    concurrency: int,
    good_share: float,
    sample_every: float = 5.0,
) -> dict[str, Any]:
    """Warm up (see the module docstring), then keep ``concurrency`` requests in flight for ``duration`` s.

    Returns the counts of the load (``requests``, ``good_failed``, ``changed``, ``hostile_wrong``...), those of
    the concurrent warm-up under ``warmup``, latencies, the memory samples (``t_s`` from the start sample) and
    the first problems."""
    import tritonclient.grpc.aio as aioclient

    client = aioclient.InferenceServerClient(url)
    reference: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    latencies: list[float] = []
    # warm-up, part 1: every good video once, one at a time: these answers are the references
    for name, data in good.items():
        status, result = await _infer(client, data)
        if status != "ok":
            await client.close()
            raise RuntimeError(f"good video {name} failed during warm-up: {status} {result}")
        reference[name] = result

    async def send(name: str, stats: dict[str, int]) -> None:
        """One request for input ``name``, checked and counted in ``stats``."""
        t0 = time.monotonic()
        if name in good:
            status, result = await _infer(client, good[name])
            stats["good"] += 1
            if status != "ok":
                stats["good_failed"] += 1
                problems.append(f"good {name}: {status} {str(result)[:200]}")
            else:
                latencies.append(time.monotonic() - t0)
                if not same_answer(result, reference[name]):
                    stats["changed"] += 1
                    problems.append(f"changed {name}: {result.get('fake_probability')} vs "
                                    f"{reference[name].get('fake_probability')}")  # fmt: skip
        else:
            status, result = await _infer(client, hostile[name])
            stats["hostile"] += 1
            if status != "StatusCode.INVALID_ARGUMENT":
                stats["hostile_wrong"] += 1
                problems.append(f"hostile {name}: {status} {str(result)[:200]}")
        stats["requests"] += 1

    # warm-up, part 2: every input `concurrency` times at once (the shared-memory pools and the batched models'
    # working memory reach the size of a full batch of the largest input before the start sample)
    warmup = _new_stats()
    for name in [*good, *hostile]:
        await asyncio.gather(*(send(name, warmup) for _ in range(concurrency)))
    latencies.clear()

    memory: list[dict[str, float]] = []

    def sample() -> None:
        if server_pid is not None:
            memory.append({"t_s": round(time.monotonic() - start, 1), **server_memory_mb(server_pid)})

    stats = _new_stats()
    start = time.monotonic()
    sample()
    rng = np.random.default_rng(1)
    good_names, hostile_names = list(good), list(hostile)

    def pick() -> str:
        names = good_names if rng.random() < good_share else hostile_names
        return names[int(rng.integers(0, len(names)))]

    async def lane() -> None:
        while time.monotonic() - start < duration:
            await send(pick(), stats)

    async def sampler() -> None:
        while time.monotonic() - start < duration:
            await asyncio.sleep(sample_every)
            sample()

    try:
        await asyncio.gather(sampler(), *(lane() for _ in range(concurrency)))
    finally:
        await client.close()
    elapsed = time.monotonic() - start
    sample()
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {
        **stats,
        "warmup": warmup,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(stats["requests"] / elapsed, 3),
        "good_latency_p50_s": round(float(np.percentile(lat, 50)), 2),
        "good_latency_p95_s": round(float(np.percentile(lat, 95)), 2),
        "memory": memory,
        "problems": problems[:50],
    }


def memory_summary(memory: list[dict[str, float]], windows: int = 6) -> dict[str, Any]:
    """Start, middle, end, max and start-to-end growth of the total PSS (MB), the growth of its anonymous and
    shared-memory parts, and the lowest total of each of ``windows`` equal stretches of time (a leak shows as
    minima that keep rising; load spikes do not move them)."""
    if not memory:
        return {}
    total = [m["pss_mb"] for m in memory]
    last_t = memory[-1]["t_s"] or 1.0
    minima: list[float] = []
    for w in range(windows):
        lo, hi = last_t * w / windows, last_t * (w + 1) / windows
        inside = [m["pss_mb"] for m in memory if lo <= m["t_s"] < hi or (w == windows - 1 and m["t_s"] == hi)]
        if inside:
            minima.append(min(inside))
    summary: dict[str, Any] = {
        "start_mb": total[0],
        "middle_mb": total[len(total) // 2],
        "end_mb": total[-1],
        "max_mb": max(total),
        "growth_mb": round(total[-1] - total[0], 1),
        "window_minima_mb": minima,
    }
    for part in ("anon_mb", "shmem_mb"):
        if part in memory[0]:
            summary[f"{part[:-3]}_growth_mb"] = round(memory[-1][part] - memory[0][part], 1)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default %(default)s)")
    p.add_argument("--good-share", type=float, default=0.5, help="share of good videos (default %(default)s)")
    p.add_argument("--url", default=None, help="an already running server (default: start `mintime serve`)")
    p.add_argument("--server-pid", type=int, default=None, help="tritonserver's pid (memory), with --url")
    p.add_argument("--repository", type=Path, default=REPO / "model_repository", help="served (a copy of it)")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped demo checkpoint")
    p.add_argument("--num-frames", type=int, default=None, help="override video_decode's num_frames")
    p.add_argument("--max-bytes", type=int, default=8 * 1024**2, help="video_decode's max_bytes in the copy")
    p.add_argument("--no-shared", action="store_true", help="do not use the shared clips")
    p.add_argument("--max-growth-mb", type=float, default=256.0, help="allowed memory growth, start to end")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        tmp = Path(tmp)
        good, hostile = build_inputs(tmp, max_bytes=args.max_bytes, shared=not args.no_shared)
        serve = None
        try:
            if args.url is None:
                repo = prepare_repository(
                    args.repository,
                    tmp / "model_repository",
                    num_frames=args.num_frames,
                    max_bytes=args.max_bytes,
                )
                serve, url, pid = start_serve(repo, args.checkpoint, tmp / "server.log")
            else:
                url, pid = args.url, args.server_pid
            result = asyncio.run(
                soak(
                    url,
                    pid,
                    good,
                    hostile,
                    duration=args.duration,
                    concurrency=args.concurrency,
                    good_share=args.good_share,
                )  # fmt: skip
            )
        finally:
            if serve is not None:
                serve.terminate()
                serve.wait(timeout=120)
    result["memory_summary"] = memory_summary(result["memory"])
    result["settings"] = {k: str(v) for k, v in vars(args).items()}
    m = result["memory_summary"]
    print(f"duration            {result['seconds']} s, concurrency {args.concurrency}")
    print(f"requests            {result['requests']} ({result['requests_per_s']}/s): {result['good']} good, "
          f"{result['hostile']} hostile")  # fmt: skip
    print(f"good failed         {result['good_failed']}  (must be 0)")
    print(f"answers changed     {result['changed']}  (must be 0)")
    print(f"hostile not refused {result['hostile_wrong']}  (must be 0; INVALID_ARGUMENT expected)")
    w = result["warmup"]
    print(f"concurrent warm-up  {w['requests']} requests: {w['good_failed']} good failed, {w['changed']} changed, "
          f"{w['hostile_wrong']} hostile not refused  (must be 0)")  # fmt: skip
    print(f"good latency        p50 {result['good_latency_p50_s']} s, p95 {result['good_latency_p95_s']} s")
    if m:
        print(f"server memory (MB)  start {m['start_mb']}, middle {m['middle_mb']}, end {m['end_mb']}, "
              f"max {m['max_mb']}, growth {m['growth_mb']} (bound {args.max_growth_mb})")  # fmt: skip
        print(
            f"  of which          anonymous {m.get('anon_growth_mb')}, shared memory {m.get('shmem_growth_mb')}"
        )
        print(f"  lowest per sixth  {', '.join(str(v) for v in m['window_minima_mb'])}")
    for line in result["problems"][:10]:
        print(f"  {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    bad = sum(r["good_failed"] + r["changed"] + r["hostile_wrong"] for r in (result, result["warmup"]))
    return 1 if bad or (m and m["growth_mb"] > args.max_growth_mb) else 0


if __name__ == "__main__":
    sys.exit(main())
