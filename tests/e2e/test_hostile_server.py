"""Hostile inputs against the real server (issue 11): the bomb, the oversized input and the unknown codec get
precise INVALID_ARGUMENT errors (never INTERNAL), memory stays bounded, and the next request is served.

Before the decode budget, an 8192x4096 clip of flat frames (100 KB) grew the server past 13 GiB, an unknown
codec tag was answered INTERNAL (AttributeError), and inputs were accepted up to gRPC's 2 GiB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import E2E_FRAMES, E2E_MAX_BYTES
from tests.helpers.media import flat_clip

pytestmark = [pytest.mark.needs_triton]

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


def send(server, data: bytes) -> dict:
    from client.api import MintimeClient

    return MintimeClient(server.grpc_url, max_bytes=None).predict(data)


def refused(server, data: bytes) -> tuple[str, str]:
    """(status, message) of a request the server must refuse."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    arr = np.frombuffer(data, np.uint8).reshape(1, -1)
    inp = grpcclient.InferInput("VIDEO", list(arr.shape), "UINT8")
    inp.set_data_from_numpy(arr)
    with pytest.raises(InferenceServerException) as info:
        client.infer("mintime", [inp])
    return str(info.value.status()), info.value.message()


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and all its descendants (shared memory counted once), MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def test_oversized_input_is_refused_before_decoding(triton_server, noise_clip: Path) -> None:
    good = noise_clip.read_bytes()
    data = good + b"\x00" * (
        E2E_MAX_BYTES + 1 - len(good)
    )  # a valid file with a tail: only the size is wrong
    status, message = refused(triton_server, data)
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert message == (
        "in ensemble 'mintime', video_decode: cannot decode the video: too large: "
        f"{E2E_MAX_BYTES + 1} bytes exceeds max_bytes={E2E_MAX_BYTES}"
    )
    assert send(triton_server, good)["status"] == "no_face"
    # the client refuses it without sending when it knows the limit
    from client.api import MintimeClient, MintimeClientError

    with pytest.raises(MintimeClientError, match="too large") as info:
        MintimeClient(triton_server.grpc_url, max_bytes=E2E_MAX_BYTES).predict(data)
    assert info.value.status == "StatusCode.INVALID_ARGUMENT"


def test_unknown_codec_tag_is_invalid_argument(triton_server, noise_clip: Path) -> None:
    data = noise_clip.read_bytes()
    assert b"avc1" in data
    status, message = refused(triton_server, data.replace(b"avc1", b"xxxx"))
    assert status == "StatusCode.INVALID_ARGUMENT", message
    assert message.endswith(
        "unsupported codec: the MP4/MOV video stream's codec tag 'xxxx' is unknown to FFmpeg"
    )
    assert send(triton_server, data)["status"] == "no_face"


def test_8k_bomb_is_refused(triton_server, tmp_path: Path) -> None:
    bomb = flat_clip(tmp_path / "bomb.mp4", (8192, 4096), 33, value=128).read_bytes()
    assert len(bomb) < 1_000_000  # ~100 KB that would decode to 33 x 100 MB of RGB
    status, message = refused(triton_server, bomb)
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert message.endswith("too large: frames of 8192x4096 pixels exceed max_frame_pixels=9437184")


def test_4k_bomb_is_answered_within_the_memory_bound(triton_server, tmp_path: Path) -> None:
    """33 flat 4096x2304 frames (the largest accepted size): decoded, scaled to 1920x1080, answered."""
    bomb = flat_clip(tmp_path / "bomb4k.mp4", (4096, 2304), 33, value=128).read_bytes()
    before = tree_pss_mb(triton_server.process.pid)
    result = send(triton_server, bomb)
    after = tree_pss_mb(triton_server.process.pid)
    assert result["status"] == "no_face"
    assert result["clip"]["width"] == 1920 and result["clip"]["height"] == 1080
    assert len(result["clip"]["sampled_frames"]) == E2E_FRAMES
    # frames handed on: 8 x 1920 x 1080 x 3 = 50 MB; the decoder's 4K buffers and the face stage add to it
    assert after - before < 1024, (before, after)
