"""`mintime export` never touches tracked files (issue 8): twice in a row with the default target, in a git
checkout of this tree, leaves `git status` clean, and the server then serves the export.

The checkout is a fresh repository holding this tree's tracked (and not ignored) files, so the test sees the
code as it is now. For speed the exports skip the fp16 graph and check parity at batch 1 only; the target, the
seeding and the pruning are the defaults.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = _git(REPO, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    dst = tmp_path / "checkout"
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    _git(dst, "init", "-q")
    _git(dst, "add", "-A")
    _git(dst, "commit", "-qm", "tree under test")
    return dst


@pytest.mark.needs_triton
def test_export_twice_with_defaults_leaves_git_clean_and_serves(checkout: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "mintime.cli", "export", "--no-fp16", "--check-batches", "1", "--json"],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    assert _git(checkout, "status", "--porcelain", "--untracked-files=all") == ""
    target = checkout / "build" / "model_repository"
    from export import repository as repo

    for network in ("backbone", "temporal"):
        assert repo.versions(target / network) == [1, 2, 3]  # version 1 (committed) is never pruned
        assert repo.versions(checkout / "model_repository" / network) == [1]
        assert repo.version_problem(target / network / "3") is None

    from client.api import MintimeClient
    from mintime.serving.server import TritonServer, free_port
    from tests.helpers.media import make_clip

    clip = make_clip(tmp_path / "grey.mp4", frames=8, size=(160, 120))
    server = TritonServer(
        target,
        grpc_port=free_port(),
        http_port=free_port(),
        metrics_port=free_port(),
        env={"PYTHONPATH": str(checkout), "MINTIME_CHECKPOINT": ""},
        log_path=tmp_path / "server.log",
        startup_timeout=300,
    )
    with server:
        backbone, temporal = repo.check_served_pair(target, env={})
        assert (backbone.version, temporal.version) == (3, 3) and backbone.weights == temporal.weights
        log = server.log_path.read_text()
        assert f"backbone: onnxruntime {target / 'backbone' / '3' / 'model.onnx'}" in log
        result = MintimeClient(server.grpc_url).predict(clip)
    assert result["status"] == "no_face" and result["fake_probability"] is None
