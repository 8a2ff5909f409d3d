"""The client refuses videos over the decode budget's max_bytes before reading or sending them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")

from client import api  # noqa: E402
from mintime.limits import DEFAULT_LIMITS  # noqa: E402


def test_read_video_checks_the_size_first(tmp_path: Path) -> None:
    f = tmp_path / "v.mp4"
    f.write_bytes(b"x" * 11)
    for video in (f, str(f), b"x" * 11, bytearray(11), np.zeros(11, np.uint8)):
        with pytest.raises(api.MintimeClientError, match=r"too large: 11 bytes exceeds max_bytes=10") as info:
            api.read_video(video, max_bytes=10)
        assert info.value.status == "StatusCode.INVALID_ARGUMENT"
        assert len(api.read_video(video, max_bytes=11)) == 11
        assert len(api.read_video(video, max_bytes=None)) == 11


def test_client_default_is_the_service_budget() -> None:
    assert api.MintimeClient().max_bytes == DEFAULT_LIMITS.max_bytes == 256 * 1024**2


def test_oversized_video_is_reported_without_contacting_the_server(tmp_path: Path) -> None:
    f = tmp_path / "v.mp4"
    f.write_bytes(b"x" * 100)
    client = api.MintimeClient("127.0.0.1:1", max_bytes=50)  # nothing listens there
    with pytest.raises(api.MintimeClientError, match="too large: 100 bytes exceeds max_bytes=50"):
        client.predict(f)
    (pred,) = asyncio.run(client.predict_many([f], retries=0))
    assert not pred.ok and pred.attempts == 0 and "too large: 100 bytes" in pred.error


def test_cli_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from client.cli import main

    f = tmp_path / "v.mp4"
    f.write_bytes(b"x" * 100)
    assert main([str(f), "--url", "127.0.0.1:1", "--max-bytes", "50", "--json", "--no-progress"]) == 1
    assert "too large: 100 bytes exceeds max_bytes=50" in capsys.readouterr().out
