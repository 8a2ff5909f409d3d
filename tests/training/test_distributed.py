"""``torchrun --nproc_per_node 2`` on CPU (gloo): a tiny run completes, and a second run resumes from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from training.config import load_config, save_config  # noqa: E402
from training.split import read_list, write_list  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _torchrun(cfg: Path, *overrides: str, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mintime.cli",
        "train",
        "--config",
        str(cfg),
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_torchrun_two_processes_then_resume(tiny_layout, tmp_path):
    # 7 validation videos: DistributedSampler pads rank 1 with a duplicate, which the gather must drop
    val = write_list(read_list(tiny_layout["val"])[:7], tmp_path / "val7.csv")
    out = tmp_path / "run"
    cfg = load_config(
        "tiny",
        {
            "data_path": str(tiny_layout["data"]),
            "train_list": str(tiny_layout["train"]),
            "val_list": str(val),
            "output_dir": str(out),
            "epochs": 2,
        },
    )
    path = save_config(cfg, tmp_path / "cfg.yaml")

    first = _torchrun(path)
    assert first.returncode == 0, first.stderr[-3000:]
    s1 = json.loads((out / "summary.json").read_text())
    assert s1["world_size"] == 2 and s1["epochs_completed"] == 2
    assert all(h["val"]["n"] == 7 and h["train"]["samples"] == 8 for h in s1["history"])
    assert (out / "best.pt").is_file() and (out / "last.state.pt").is_file()
    assert "best epoch" in first.stdout and first.stdout.count("best epoch") == 1  # printed by rank 0 only

    second = _torchrun(path, "epochs=3", "resume=auto")
    assert second.returncode == 0, second.stderr[-3000:]
    s2 = json.loads((out / "summary.json").read_text())
    assert [h["epoch"] for h in s2["history"]] == [0, 1, 2]
    assert s2["history"][:2] == s1["history"]  # the resumed run kept the first run's epochs
    assert "resumed from" in second.stderr or s2["epochs_completed"] == 3
