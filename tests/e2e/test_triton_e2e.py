"""The ensemble on a real tritonserver, over gRPC: same answers as the in-process Predictor, errors per request."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA

pytestmark = [pytest.mark.needs_triton]

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

OUTPUTS = ("FAKE_PROBABILITY", "IDENTITY_SCORES", "RESULT_JSON")
CLIPS = sorted((DATA / "videos").glob("*.mp4")) if (DATA / "videos").is_dir() else []
#: The clip compared in every run (two identities, one fake); the others are marked slow (~30-60 s each here).
FAST_CLIP = "two_people_one_fake_720p"
CLIP_PARAMS = [
    pytest.param(c, id=c.stem, marks=() if c.stem == FAST_CLIP else (pytest.mark.slow,)) for c in CLIPS
]
MODELS = ("mintime", "video_decode", "face_pipeline", "backbone", "temporal", "explain")


def infer(server, data: bytes) -> dict:
    """Send raw bytes as VIDEO (UINT8 [1, n]); returns the three outputs, RESULT_JSON parsed."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    arr = np.frombuffer(data, np.uint8).reshape(1, -1)
    inp = grpcclient.InferInput("VIDEO", list(arr.shape), "UINT8")
    inp.set_data_from_numpy(arr)
    res = client.infer("mintime", [inp], outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUTS])
    return {
        "prob": res.as_numpy("FAKE_PROBABILITY"),
        "scores": res.as_numpy("IDENTITY_SCORES"),
        "json": json.loads(res.as_numpy("RESULT_JSON")[0, 0]),
    }


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_health_readiness_and_metrics(triton_server):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    assert client.is_server_live() and client.is_server_ready()
    for model in MODELS:
        assert client.is_model_ready(model), model
    assert http_get(f"http://{triton_server.http_url}/v2/health/live")[0] == 200
    assert http_get(f"http://{triton_server.http_url}/v2/health/ready")[0] == 200
    status, metrics = http_get(triton_server.metrics_url)
    assert status == 200
    assert 'nv_inference_request_success{model="mintime"' in metrics
    # the served ensemble config is the committed default variant (Python backend steps)
    config = client.get_model_config("backbone", as_json=True)["config"]
    assert config["backend"] == "python" and int(config["max_batch_size"]) == 8
    # the server says what each network serves: PyTorch with the checkpoint of $MINTIME_CHECKPOINT
    assert [s.network for s in triton_server.served] == ["backbone", "temporal"]
    for served in triton_server.served:
        assert served.version == 1 and served.problem is None
        assert served.describe().startswith(f"{served.network} version 1 (PyTorch with $MINTIME_CHECKPOINT ")


@pytest.mark.needs_data
@pytest.mark.parametrize("clip", CLIP_PARAMS)
def test_ensemble_equals_in_process_predictor(triton_server, predictor, clip: Path):
    got = infer(triton_server, clip.read_bytes())
    want = json.loads(json.dumps(predictor.predict(clip)))
    res = got["json"]
    assert res["status"] == want["status"]
    assert (
        res["model"] == want["model"] and res["model"]["weights"][0]["sha256"]
    )  # the server names its model
    assert res["detection_pass"] == want["detection_pass"]
    if clip.stem == FAST_CLIP:  # two people, both kept: the comparison covers two identities and all 16 slots
        assert res["status"] == "ok" and sum(i["kept"] for i in res["identities"]) == 2
    assert res["label"] == want["label"]
    assert [i["id"] for i in res["identities"]] == [i["id"] for i in want["identities"]]
    for a, b in zip(res["identities"], want["identities"], strict=True):
        assert a["kept"] == b["kept"] and a["slots"] == b["slots"] and a["num_faces"] == b["num_faces"]
        assert [f["frame"] for f in a["faces"]] == [f["frame"] for f in b["faces"]]
        np.testing.assert_allclose([f["box"] for f in a["faces"]], [f["box"] for f in b["faces"]], atol=1e-6)
        if b.get("fake_score") is not None:
            assert a["fake_score"] == pytest.approx(b["fake_score"], abs=1e-4)
    assert res["slots"] == want["slots"]
    assert res["clip"]["sampled_frames"] == want["clip"]["sampled_frames"]
    assert res["clip"]["fps"] == pytest.approx(want["clip"]["fps"], rel=1e-6)
    if want["fake_probability"] is None:
        assert res["fake_probability"] is None and math.isnan(float(got["prob"][0, 0]))
        assert got["scores"].shape == (1, 0)
    else:
        assert res["fake_probability"] == pytest.approx(want["fake_probability"], abs=1e-4)
        assert float(got["prob"][0, 0]) == pytest.approx(res["fake_probability"], abs=1e-6)
        kept = [i["fake_score"] for i in res["identities"] if i["fake_score"] is not None]
        np.testing.assert_allclose(got["scores"][0], kept, atol=1e-6)


def test_no_face_video_gives_no_face_result(triton_server, noise_clip):
    got = infer(triton_server, noise_clip.read_bytes())
    assert got["json"]["status"] == "no_face"
    assert got["json"]["fake_probability"] is None
    assert got["json"]["reason"]
    assert math.isnan(float(got["prob"][0, 0]))
    assert got["scores"].shape == (1, 0)


def _truncated(noise_clip: Path) -> bytes:
    data = noise_clip.read_bytes()
    return data[: len(data) // 3]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("empty", "empty"),
        ("random", "not a video"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_bad_request_gets_precise_error_and_next_request_works(triton_server, noise_clip, payload, expected):
    data = {
        "empty": b"",
        "random": np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes(),
        "truncated": _truncated(noise_clip),
    }[payload]
    with pytest.raises(InferenceServerException) as info:
        infer(triton_server, data)
    message = info.value.message()
    assert "video_decode" in message and expected in message.lower(), message
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    # the next request is served normally
    assert infer(triton_server, noise_clip.read_bytes())["json"]["status"] == "no_face"


def test_client_library_and_cli(triton_server, noise_clip, tmp_path, capsys):
    from client.api import MintimeClient, MintimeClientError
    from client.cli import main

    client = MintimeClient(triton_server.grpc_url)
    assert client.is_ready()
    assert client.predict(noise_clip)["status"] == "no_face"
    with pytest.raises(MintimeClientError, match="not a video"):
        client.predict(b"definitely not a video file" * 100)

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    preds = client.predict_many_sync([noise_clip, tmp_path / "missing.mp4", bad], concurrency=2, retries=1)
    assert [p.ok for p in preds] == [True, False, False]
    assert "not found" in preds[1].error and "video_decode" in preds[2].error
    assert preds[0].to_json()["video"] == str(noise_clip)

    code = main(["--url", triton_server.grpc_url, "--json", "--no-progress", str(noise_clip), str(bad)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert {line["video"]: line["status"] for line in lines} == {
        str(noise_clip): "no_face",
        str(bad): "error",
    }


@pytest.mark.needs_data
def test_client_human_output_is_predicts(triton_server, tiny_checkpoint, capsys):
    """`mintime-client clip` prints what `mintime predict clip` prints (model line, identities, attributions)."""
    from client.cli import main as client_main
    from mintime.cli import main as mintime_main
    from tests.e2e.conftest import E2E_FRAMES

    clip = DATA / "videos" / f"{FAST_CLIP}.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    assert client_main(["--url", triton_server.grpc_url, "--no-progress", str(clip)]) == 0
    served = capsys.readouterr().out
    args = ["predict", "--checkpoint", str(tiny_checkpoint), "--num-frames", str(E2E_FRAMES), str(clip)]
    assert mintime_main(args) == 0
    local = capsys.readouterr().out
    served, local = served.splitlines(), local.splitlines()
    assert served[0].startswith("model: tiny (mintime, efficientnet_lite0 backbone; tiny.pt sha256:")
    assert served[0] == local[0]
    assert any("(attribution, not a probability), attention " in line for line in served)
    assert len(served) == len(local) >= 4  # model line, verdict, two identities
    for a, b in zip(
        served[1:], local[1:], strict=True
    ):  # equal text; numbers equal to the server's tolerance
        assert a == b or _numbers_close(a, b), (a, b)


def _numbers_close(a: str, b: str, atol: float = 2e-4) -> bool:
    import re

    num = re.compile(r"-?\d+\.\d+")
    if num.sub("#", a) != num.sub("#", b):
        return False
    return all(abs(float(x) - float(y)) <= atol for x, y in zip(num.findall(a), num.findall(b), strict=True))
