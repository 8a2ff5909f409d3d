"""A checkpoint of `mintime train --config tiny` (8 face slots, not the published 16) through the commands a user
runs: `mintime export`, `mintime serve` on the export, `mintime-client`, and `mintime predict` on the same clip."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO
from tests.e2e.conftest import E2E_FRAMES

pytestmark = [pytest.mark.needs_triton, pytest.mark.needs_data]

CLIP = DATA / "videos" / "two_people_one_fake_720p.mp4"


def test_a_tiny_checkpoint_exports_serves_and_predicts(e2e_repository: Path, tmp_path: Path, capsys) -> None:
    from client.cli import main as client_main
    from mintime.cli import main
    from mintime.serving.server import free_port
    from tests.e2e.weights import make_tiny_training_checkpoint

    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    ck = make_tiny_training_checkpoint(tmp_path / "best.pt")
    repo = tmp_path / "model_repository"
    shutil.copytree(e2e_repository, repo)  # E2E_FRAMES sampled frames: seconds per clip
    assert main(["export", "--checkpoint", str(ck), "--model-repository", str(repo), "--no-fp16"]) == 0
    capsys.readouterr()

    ports = {name: free_port() for name in ("grpc", "http", "metrics")}
    args = [sys.executable, "-m", "mintime.cli", "serve", "--model-repository", str(repo)]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    serve = subprocess.Popen(
        [*args, "--log-file", str(tmp_path / "server.log")],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = serve.stdout.readline()  # printed once the server is ready (or nothing: it exited)
        assert first.startswith("Triton is serving"), (first, (tmp_path / "server.log").read_text()[-3000:])
        url = f"127.0.0.1:{ports['grpc']}"
        assert client_main(["--url", url, "--no-progress", str(CLIP)]) == 0
        served = capsys.readouterr().out.splitlines()
    finally:
        serve.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while serve.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if serve.poll() is None:
            serve.kill()
    args = ["predict", "--checkpoint", str(ck), "--num-frames", str(E2E_FRAMES), str(CLIP)]
    assert main(args) == 0
    local = capsys.readouterr().out.splitlines()
    assert served[0].startswith("model: tiny-8-slots (mintime, tiny_test backbone; best.pt sha256:")
    assert len(served) == len(local) == 4, served  # model line, verdict, two identities
    assert served[0] == local[0] and served[1].split(" (P(fake)")[0] == local[1].split(" (P(fake)")[0]
    assert served[2].endswith("slots [0, 1, 2, 3]") and served[3].endswith("slots [4, 5, 6, 7]")
    assert [line.rsplit("slots", 1)[1] for line in served[2:]] == [
        line.rsplit("slots", 1)[1] for line in local[2:]
    ]
