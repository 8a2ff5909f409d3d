"""The video_decode Python model applies the decode budget: oversized inputs refused before decoding,
unknown codecs and bombs answered INVALID_ARG, the next request unaffected (fake pb_utils; the real server:
tests/e2e/test_hostile_server.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.model_repository import fake_pb_utils as pb
from tests.model_repository.test_model_py import load_model_py, model_args

pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from tests.helpers.media import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "c.mp4", frames=20, size=(64, 48)).read_bytes()


def _video(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8)[None]


def test_default_limits_are_the_shared_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from mintime.limits import DEFAULT_LIMITS

    model = load_model_py("video_decode", monkeypatch).TritonPythonModel()
    model.initialize(model_args("video_decode"))
    assert model.limits == DEFAULT_LIMITS


def test_limits_from_parameters_and_precise_errors(
    monkeypatch: pytest.MonkeyPatch, clip_bytes: bytes
) -> None:
    model = load_model_py("video_decode", monkeypatch).TritonPythonModel()
    model.initialize(model_args("video_decode", num_frames="4", max_bytes=str(len(clip_bytes))))
    assert model.limits.max_bytes == len(clip_bytes)
    requests = [
        pb.request(VIDEO=_video(clip_bytes + b"\x00")),
        pb.request(VIDEO=_video(clip_bytes.replace(b"avc1", b"xxxx"))),
        pb.request(VIDEO=_video(clip_bytes)),
    ]
    big, codec, ok = model.execute(requests)
    assert big.error().code == pb.TritonError.INVALID_ARG
    assert big.error().message() == (
        f"video_decode: cannot decode the video: too large: {len(clip_bytes) + 1} bytes exceeds "
        f"max_bytes={len(clip_bytes)}"
    )
    assert codec.error().code == pb.TritonError.INVALID_ARG
    assert codec.error().message().endswith("codec tag 'xxxx' is unknown to FFmpeg")
    assert not ok.has_error() and ok.outputs["video_decode_frames"].shape == (1, 4, 48, 64, 3)


def test_bad_parameter_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model_py("video_decode", monkeypatch).TritonPythonModel()
    with pytest.raises(ValueError, match="parameter 'max_frames': expected a number"):
        model.initialize(model_args("video_decode", max_frames="lots"))


def test_frames_are_scaled_on_the_server_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import av

    path = tmp_path / "uhd.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "51"})
        s.width, s.height, s.pix_fmt = 3840, 2160, "yuv420p"
        for _ in range(2):
            for packet in s.encode(av.VideoFrame.from_ndarray(np.zeros((2160, 3840, 3), np.uint8))):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    model = load_model_py("video_decode", monkeypatch).TritonPythonModel()
    model.initialize(model_args("video_decode"))
    (resp,) = model.execute([pb.request(VIDEO=_video(path.read_bytes()))])
    assert resp.outputs["video_decode_frames"].shape == (1, 2, 1080, 1920, 3)
