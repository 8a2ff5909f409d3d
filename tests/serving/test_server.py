"""TritonServer command line and environment, the stub installer, and `mintime serve` arguments (no server)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
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
