"""No orphans: tritonserver (and its Python-backend stubs) die with `mintime serve`, SIGKILL included.

Against the real bundled tritonserver, serving a one-model repository (video_decode: a Python model, so a stub
process runs too). Before the parent-death signal, the server kept serving on all three ports after
`kill -9` of `mintime serve`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.needs_triton


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def one_model_repository(tmp_path: Path) -> Path:
    dst = tmp_path / "model_repository"
    shutil.copytree(
        REPO / "model_repository" / "video_decode",
        dst / "video_decode",
        ignore=shutil.ignore_patterns("*.dali", "__pycache__"),
    )
    return dst


def test_sigkill_of_mintime_serve_takes_tritonserver_down(one_model_repository: Path, tmp_path: Path) -> None:
    from mintime.serving.server import free_port

    ports = {"grpc": free_port(), "http": free_port(), "metrics": free_port()}
    env = dict(os.environ, PYTHONPATH=str(REPO))
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mintime.cli",
            "serve",
            "--model-repository",
            str(one_model_repository),
            "--grpc-port",
            str(ports["grpc"]),
            "--http-port",
            str(ports["http"]),
            "--metrics-port",
            str(ports["metrics"]),
            "--log-file",
            str(tmp_path / "server.log"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    leftovers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while not _ready(ports["http"]):
            assert serve.poll() is None, serve.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.5)
        (triton,) = _children(serve.pid)
        assert "tritonserver" in Path(f"/proc/{triton}/cmdline").read_text()
        stubs = _children(triton)
        leftovers += [triton, *stubs]
        assert stubs, "the Python-backend stub of video_decode runs as a child of tritonserver"

        serve.kill()  # SIGKILL: no handler, no cleanup in mintime serve
        serve.wait(timeout=10)

        deadline = time.monotonic() + 60
        while any(_alive(p) for p in (triton, *stubs)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(triton), "tritonserver outlived mintime serve"
        assert not [p for p in stubs if _alive(p)], "a Python-backend stub outlived the server"
        assert not _ready(ports["http"])
    finally:
        if serve.poll() is None:
            serve.kill()
        for pid in leftovers:  # never leave a server behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
