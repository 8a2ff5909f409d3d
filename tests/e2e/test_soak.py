"""The soak harness (benchmarks/soak.py) against the real server, briefly: it counts good, changed and hostile
requests correctly (a good video passed off as hostile must be counted as not refused), its concurrent warm-up
sends every input ``concurrency`` times, and it measures the server tree's memory with its parts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers.scripts import load_script

pytestmark = [pytest.mark.needs_triton]

pytest.importorskip("tritonclient.grpc")


soak = load_script(REPO / "benchmarks" / "soak.py")


def test_soak_counts_requests_and_measures_the_server(triton_server, noise_clip: Path) -> None:
    noise = noise_clip.read_bytes()
    good = {"noise": noise}
    # "mislabelled" is a good video in the hostile set: the harness must report it as not refused, every time
    hostile = {"text": b"this is not a video\n" * 50, "empty": b"", "mislabelled": noise}
    result = asyncio.run(
        soak.soak(
            triton_server.grpc_url,
            triton_server.process.pid,
            good,
            hostile,
            duration=6.0,
            concurrency=2,
            good_share=0.5,
            sample_every=1.0,
        )
    )
    warmup = result["warmup"]
    assert warmup["requests"] == 2 * 4 and warmup["good"] == 2 and warmup["hostile"] == 6
    assert (warmup["good_failed"], warmup["changed"], warmup["hostile_wrong"]) == (0, 0, 2)
    assert result["requests"] >= 2 and result["requests"] == result["good"] + result["hostile"]
    assert result["good_failed"] == 0 and result["changed"] == 0
    assert any(p.startswith("hostile mislabelled: ok") for p in result["problems"])
    assert not any(p.startswith(("hostile text", "hostile empty")) for p in result["problems"])

    memory = result["memory"]
    assert len(memory) >= 3 and memory[0]["t_s"] == 0.0
    for m in memory:
        # tritonserver and its Python-backend stubs (torch loaded): hundreds of MB, their shm regions mapped
        assert m["pss_mb"] > 200 and 0 < m["shmem_mb"] < m["pss_mb"] and m["anon_mb"] < m["pss_mb"]
        assert m["shm_files_mb"] > 0
    summary = soak.memory_summary(memory)
    assert summary["start_mb"] == memory[0]["pss_mb"] and summary["end_mb"] == memory[-1]["pss_mb"]
    assert summary["growth_mb"] == pytest.approx(memory[-1]["pss_mb"] - memory[0]["pss_mb"], abs=0.11)


def test_memory_summary_minima_show_a_leak_not_spikes() -> None:
    flat_with_spikes = [
        {
            "t_s": float(t),
            "pss_mb": 1000.0 + (900.0 if t % 10 == 5 else 0.0),
            "anon_mb": 600.0,
            "shmem_mb": 300.0,
        }
        for t in range(60)
    ]
    s = soak.memory_summary(flat_with_spikes)
    assert s["window_minima_mb"] == [1000.0] * 6 and s["growth_mb"] == 0.0 and s["max_mb"] == 1900.0
    leak = [
        {"t_s": float(t), "pss_mb": 1000.0 + 10.0 * t, "anon_mb": 600.0 + 10.0 * t, "shmem_mb": 300.0}
        for t in range(60)
    ]
    s = soak.memory_summary(leak)
    assert s["window_minima_mb"] == [1000.0, 1100.0, 1200.0, 1300.0, 1400.0, 1500.0]
    assert (s["growth_mb"], s["anon_growth_mb"], s["shmem_growth_mb"]) == (590.0, 590.0, 0.0)
