"""The client library and CLI against fakes (no server): request building, parsing, retries, output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from client import api  # noqa: E402
from client.cli import EXIT_NO_SERVER, InOrder, expand_videos, main, summary_line  # noqa: E402

RESULT = {"status": "ok", "fake_probability": 0.25, "label": "pristine", "identities": []}


def test_client_imports_no_torch():
    code = (
        "import sys, client, client.api, client.cli;"
        "bad = [m for m in ('torch', 'cv2', 'av', 'nvidia.dali', 'mintime.pipeline') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_video_tensor_and_read_video(tmp_path):
    t = api.video_tensor(b"\x00\x01\xff")
    assert t.shape == (1, 3) and t.dtype == np.uint8 and t.tolist() == [[0, 1, 255]]
    f = tmp_path / "v.mp4"
    f.write_bytes(b"abc")
    assert (
        api.read_video(f)
        == b"abc"
        == api.read_video(str(f))
        == api.read_video(np.frombuffer(b"abc", np.uint8))
    )
    with pytest.raises(FileNotFoundError, match="video not found"):
        api.read_video(tmp_path / "missing.mp4")
    with pytest.raises(api.MintimeClientError, match="empty video"):
        api.read_video(b"")


def test_parse_result_and_prediction_json():
    assert api.parse_result(np.array([[json.dumps(RESULT).encode()]], dtype=object)) == RESULT
    ok = api.Prediction("a.mp4", RESULT)
    assert ok.ok and ok.to_json() == {"video": "a.mp4", **RESULT}
    bad = api.Prediction("b.mp4", None, "boom")
    assert not bad.ok and bad.to_json() == {"video": "b.mp4", "status": "error", "error": "boom"}


def test_backoff_doubles_up_to_a_cap():
    assert [api.backoff_delay(a, 0.5, cap=3.0) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


class _Response:
    def as_numpy(self, name):
        assert name == "RESULT_JSON"
        return np.array([[json.dumps(RESULT).encode()]], dtype=object)


class FakeAioClient:
    """Fails with UNAVAILABLE for the first ``unavailable`` calls per video, INVALID_ARGUMENT for 'bad' videos;
    a video whose content starts with ``slow`` answers after the others."""

    unavailable = 0
    calls: list[int] = []

    def __init__(self, url):
        self.url = url
        self.seen: dict[int, int] = {}

    async def infer(self, model_name, inputs, outputs=None, client_timeout=None):
        import asyncio

        data = inputs[0]._raw_content if hasattr(inputs[0], "_raw_content") else b""
        if data.startswith(b"slow"):
            await asyncio.sleep(0.3)
        key = len(data)
        FakeAioClient.calls.append(key)
        self.seen[key] = self.seen.get(key, 0) + 1
        if data.startswith(b"bad"):
            raise InferenceServerException("video_decode: not a video", status="StatusCode.INVALID_ARGUMENT")
        if self.seen[key] <= FakeAioClient.unavailable:
            raise InferenceServerException("connection refused", status="StatusCode.UNAVAILABLE")
        return _Response()

    async def close(self):
        pass


class FakeSyncClient:
    """The pre-flight check's view of a server: live, with the ensemble ready unless told otherwise."""

    model_ready = True

    def __init__(self, url):
        self.url = url

    def is_server_live(self, headers=None, client_timeout=None):
        return True

    def is_model_ready(self, model_name, model_version="", headers=None, client_timeout=None):
        return FakeSyncClient.model_ready

    def close(self):
        pass


@pytest.fixture
def fake_aio(monkeypatch):
    import tritonclient.grpc as grpc
    import tritonclient.grpc.aio as aio

    monkeypatch.setattr(aio, "InferenceServerClient", FakeAioClient)
    monkeypatch.setattr(grpc, "InferenceServerClient", FakeSyncClient)
    FakeAioClient.calls = []
    FakeSyncClient.model_ready = True
    return FakeAioClient


def test_predict_many_retries_unavailable_then_succeeds(fake_aio):
    fake_aio.unavailable = 2
    preds = api.MintimeClient("x:1").predict_many_sync([b"video-one", b"video-2"], retries=3, backoff=0.001)
    assert [p.ok for p in preds] == [True, True]
    assert [p.attempts for p in preds] == [3, 3]
    assert preds[0].result == RESULT and preds[0].source == "<bytes>"


def test_predict_many_gives_up_and_reports_per_video(fake_aio, tmp_path):
    fake_aio.unavailable = 5
    seen = []
    preds = api.MintimeClient("x:1").predict_many_sync(
        [b"good", b"bad-one", tmp_path / "missing.mp4"],
        retries=1,
        backoff=0.001,
        concurrency=2,
        on_result=seen.append,
    )
    assert [p.ok for p in preds] == [False, False, False]
    assert preds[0].attempts == 2 and preds[0].error == "connection refused"
    assert preds[1].attempts == 1 and "not a video" in preds[1].error, "invalid input is not retried"
    assert preds[2].attempts == 0 and "video not found" in preds[2].error
    assert len(seen) == 3
    with pytest.raises(ValueError):
        api.MintimeClient("x:1").predict_many_sync([b"x"], concurrency=0)


def test_cli_prints_json_in_input_order_and_errors_on_stderr(fake_aio, tmp_path, capsys):
    fake_aio.unavailable = 0
    folder = tmp_path / "videos"
    folder.mkdir()
    for name, content in (("a.webm", b"slow content"), ("b.mp4", b"content of b"), ("notes.txt", b"x")):
        (folder / name).write_bytes(content)
    (folder / "bad.mp4").write_bytes(b"bad bytes")
    assert [p.name for p in expand_videos([folder])] == ["a.webm", "b.mp4", "bad.mp4"]
    code = main(["--json", "--no-progress", "--concurrency", "3", "--url", "x:1", str(folder)])
    cap = capsys.readouterr()
    lines = [json.loads(line) for line in cap.out.splitlines()]
    assert code == 1
    # a.webm answers last (slow) but is printed first: input order, not completion order
    assert [line["video"].rsplit("/", 1)[-1] for line in lines] == ["a.webm", "b.mp4", "bad.mp4"]
    assert lines[0]["fake_probability"] == 0.25
    assert lines[2]["status"] == "error" and "not a video" in lines[2]["error"]
    assert cap.err == f"error: {folder / 'bad.mp4'}: video_decode: not a video\n"


def test_cli_human_output_in_input_order(fake_aio, tmp_path, capsys):
    fake_aio.unavailable = 0
    paths = []
    for name, content in (("first.mp4", b"slow one"), ("second.mp4", b"quick"), ("third.mp4", b"slow two!")):
        (tmp_path / name).write_bytes(content)
        paths.append(str(tmp_path / name))
    assert main(["--no-progress", "--url", "x:1", *paths]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{n}: PRISTINE (P(fake) = 0.2500)" for n in ("first.mp4", "second.mp4", "third.mp4")]


def test_in_order_with_repeated_inputs():
    got = []
    order = InOrder(["a", "b", "a"], got.append)
    for pred in (api.Prediction("a", RESULT), api.Prediction("a", None, "x"), api.Prediction("b", RESULT)):
        order(pred)
    assert [p.source for p in got] == ["a", "b", "a"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_no_server_is_one_clear_line(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"some bytes")
    url = f"127.0.0.1:{_free_port()}"
    run = subprocess.run(
        [sys.executable, "-m", "client.cli", "--url", url, "--retries", "0", str(video)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == EXIT_NO_SERVER == 3
    assert run.stdout == ""
    assert run.stderr == f"error: no server at {url} (start one with `mintime serve`, or give --url)\n"


def test_cli_model_not_ready(fake_aio, tmp_path, capsys):
    FakeSyncClient.model_ready = False
    (tmp_path / "a.mp4").write_bytes(b"abc")
    assert main(["--url", "x:1", "--model", "mintime", str(tmp_path / "a.mp4")]) == 3
    assert capsys.readouterr().err == (
        "error: the server at x:1 has no ready model 'mintime' (check `mintime serve`'s log)\n"
    )
    assert fake_aio.calls == [], "no request sent"


def test_cli_errors_and_summary(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"warning: no video files in {tmp_path} (") and err.endswith(
        "error: no video files found\n"
    )
    assert summary_line({"video": "/x/a.mp4", **RESULT}) == "a.mp4: PRISTINE (P(fake) = 0.2500)"
    assert summary_line(
        {"video": "a.mp4", "status": "no_face", "fake_probability": None, "reason": "none"}
    ) == ("a.mp4: no face found (none)")
