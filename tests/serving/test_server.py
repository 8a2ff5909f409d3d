"""TritonServer command line and environment, the stub installer, and `mintime serve` arguments (no server)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mintime.serving import install_stub
from mintime.serving.server import ServerStartError, TritonServer, free_port


def test_command_binds_loopback_and_selects_the_config(tmp_path):
    server = TritonServer(
        tmp_path,
        grpc_port=1,
        http_port=2,
        metrics_port=3,
        config_name="production",
        tritonserver="/opt/bin/tritonserver",
        backend_directory="/opt/backends",
        extra_args=["--log-verbose=1"],
    )
    cmd = server.command()
    assert cmd[0] == "/opt/bin/tritonserver"
    assert cmd[1:] == [
        f"--model-repository={tmp_path.resolve()}",
        "--backend-directory=/opt/backends",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        "--http-port=2",
        "--grpc-port=1",
        "--metrics-port=3",
        "--grpc-infer-allocation-pool-size=0",
        "--model-config-name=production",
        "--log-verbose=1",
    ]
    assert "--model-config-name" not in " ".join(TritonServer(tmp_path).command())
    assert (server.grpc_url, server.http_url) == ("127.0.0.1:1", "127.0.0.1:2")
    assert server.metrics_url == "http://127.0.0.1:3/metrics"


def test_environment_puts_this_python_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = TritonServer(tmp_path, env={"MINTIME_CHECKPOINT": "/w.pt"}).environment()
    first = env["PATH"].split(os.pathsep)[0]
    assert first == str(Path(sys.executable).parent)
    assert (Path(first) / "python3").exists() or (Path(first) / "python").exists()
    assert env["MINTIME_CHECKPOINT"] == "/w.pt"


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_start_errors_are_clear(tmp_path):
    with pytest.raises(ServerStartError, match="tritonserver not found"):
        TritonServer(tmp_path, tritonserver=tmp_path / "nope").start()
    fake = tmp_path / "tritonserver"
    fake.write_text("#!/bin/sh\necho 'E model_repository_manager: failed to load backbone' >&2\nexit 1\n")
    fake.chmod(0o755)
    server = TritonServer(
        tmp_path,
        tritonserver=fake,
        backend_directory=tmp_path,
        log_path=tmp_path / "log.txt",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    with pytest.raises(ServerStartError, match="exited with code 1") as info:
        server.start()
    assert "failed to load backbone" in str(info.value), "the log tail is part of the error"
    assert server.process is None


def test_install_stub_copies_the_right_version(tmp_path):
    root = tmp_path / "tritonserver"
    src = root / "python_backend_stubs" / "3.11" / install_stub.STUB_NAME
    src.parent.mkdir(parents=True)
    src.write_bytes(b"stub-3.11")
    (root / "backends" / "python").mkdir(parents=True)
    path = install_stub.install_stub(root, "3.11")
    assert path == root / "backends" / "python" / install_stub.STUB_NAME
    assert path.read_bytes() == b"stub-3.11" and os.access(path, os.X_OK)
    assert install_stub.install_stub(root, "3.11") == path  # idempotent
    with pytest.raises(RuntimeError, match="no Python-backend stub for Python 3.99"):
        install_stub.install_stub(root, "3.99")


def test_serve_arguments():
    from mintime.serving.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    assert (args.grpc_port, args.http_port, args.metrics_port) == (8001, 8000, 8002)
    assert args.address == "127.0.0.1" and args.config_name is None
    assert args.model_repository.name == "model_repository"
    args = parser.parse_args(["--config-name", "production", "--grpc-port", "9001"])
    assert args.config_name == "production" and args.grpc_port == 9001


#: A stand-in tritonserver: listens on its --grpc-port and serves the folder of its log (where
#: :func:`_ready_folder` wrote ``v2/health/ready``) on its --http-port, so ``/v2/health/ready`` answers 200.
FAKE_TRITON = """#!{python}
import functools, http.server, socket, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
grpc = socket.socket()
grpc.bind(("127.0.0.1", int(args["grpc-port"])))
grpc.listen()
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="{folder}")
http.server.HTTPServer(("127.0.0.1", int(args["http-port"])), handler).serve_forever()
"""


def _ready_folder(root: Path) -> Path:
    """A folder whose static HTTP server answers ``GET /v2/health/ready`` with 200."""
    (root / "v2" / "health").mkdir(parents=True, exist_ok=True)
    (root / "v2" / "health" / "ready").write_text("")
    return root


def _fake_server(tmp_path: Path, script: str, **ports: int) -> TritonServer:
    fake = tmp_path / "tritonserver"
    fake.write_text(script)
    fake.chmod(0o755)
    ports = {"grpc_port": free_port(), "http_port": free_port(), "metrics_port": free_port(), **ports}
    return TritonServer(
        tmp_path, tritonserver=fake, backend_directory=tmp_path, log_path=tmp_path / "log.txt", **ports
    )


@pytest.mark.parametrize("taken", ["grpc", "http", "metrics"])
def test_a_taken_port_is_refused_before_start(taken: str, tmp_path: Path, capsys) -> None:
    from mintime.cli import main

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = _fake_server(tmp_path, "#!/bin/sh\nexit 0\n", **{f"{taken}_port": port})
        with pytest.raises(ServerStartError, match=f"port {port} on 127.0.0.1 .* --{taken}-port N"):
            server.start()
        assert server.process is None, "nothing was started"
        args = ["serve", "--model-repository", str(tmp_path), "--tritonserver", str(server.binary())]
        args += ["--backend-directory", str(tmp_path)]
        for name in ("grpc", "http", "metrics"):
            args += [f"--{name}-port", str(port if name == taken else free_port())]
        assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "starting" not in captured.err
    (line,) = captured.err.splitlines()
    assert line.startswith(f"error: port {port} on 127.0.0.1 (for ") and line.endswith(f"--{taken}-port N")


def test_readiness_trusts_only_our_process(tmp_path: Path) -> None:
    """Another server answering ready on our HTTP port is not our server being ready; ours is."""
    server = _fake_server(tmp_path, "#!/bin/sh\nexec sleep 60\n")
    folder = _ready_folder(tmp_path / "static")
    other = subprocess.Popen(  # another process's server, answering ready on our HTTP port
        [
            sys.executable,
            "-m",
            "http.server",
            str(server.http_port),
            "--bind",
            "127.0.0.1",
            "--directory",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server.process = subprocess.Popen([str(server.binary())])
        deadline = time.monotonic() + 10
        while not server.is_ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.is_ready(), "the other server answers the probe"
        assert not server.owns_ports()
        with pytest.raises(ServerStartError, match="not ready after 2 s"):
            server.wait_ready(2.0)
    finally:
        other.kill()
        other.wait()
        server.stop(timeout=5)

    ours = _fake_server(tmp_path, FAKE_TRITON.format(python=sys.executable, folder=folder))
    with ours:
        assert ours.owns_ports() and ours.is_ready()


def test_a_checkpoint_with_other_slots_is_refused_with_the_export_that_serves_it(
    tmp_path: Path, capsys
) -> None:
    from mintime.cli import main
    from mintime.serving.cli import served_slots
    from tests.conftest import REPO
    from tests.e2e.weights import make_tiny_training_checkpoint

    ck = make_tiny_training_checkpoint(tmp_path / "best.pt")
    repository = REPO / "model_repository"
    assert served_slots(repository) == 16
    assert main(["serve", "--model-repository", str(repository), "--checkpoint", str(ck)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: {ck} has 8 face slots, the configs of {repository} are for 16: export it (`mintime export "
        f"--checkpoint {ck} --model-repository DIR` writes configs for its slots), then `mintime serve "
        "--model-repository DIR`\n"
    )
