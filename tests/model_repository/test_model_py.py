"""The Python-backend model.py files with a fake pb_utils: one response per request, errors in the response."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.helpers.scripts import load_script
from tests.model_repository import fake_pb_utils as pb

REPOSITORY = REPO / "model_repository"


def load_model_py(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb.module())
    return load_script(REPOSITORY / name / "1" / "model.py", f"model_py_{name}", register=False)


def model_args(name: str, **overrides: str) -> dict[str, str]:
    from google.protobuf import text_format
    from google.protobuf.json_format import MessageToDict
    from tritonclient.grpc import model_config_pb2

    cfg = text_format.Parse((REPOSITORY / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    for key, value in overrides.items():
        cfg.parameters[key].string_value = value
    return {
        "model_config": json.dumps(MessageToDict(cfg, preserving_proto_field_name=True)),
        "model_instance_kind": "CPU",
        "model_instance_device_id": "0",
        "model_repository": str(REPOSITORY / name),
        "model_version": "1",
        "model_name": name,
    }


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    pytest.importorskip("av")
    from tests.helpers.media import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "c.mp4", frames=20, size=(64, 48))


def test_video_decode_one_response_per_request(monkeypatch, small_clip):
    mod = load_model_py("video_decode", monkeypatch)
    model = mod.TritonPythonModel()
    model.initialize(model_args("video_decode", num_frames="6"))
    good = np.frombuffer(small_clip.read_bytes(), np.uint8)[None]
    requests = [
        pb.request(VIDEO=np.frombuffer(b"hello, not a video" * 10, np.uint8)[None]),
        pb.request(VIDEO=good),
        pb.request(VIDEO=np.zeros((1, 0), np.uint8)),
    ]
    responses = model.execute(requests)
    assert len(responses) == 3
    bad, ok, empty = responses
    assert bad.has_error() and bad.error().code == pb.TritonError.INVALID_ARG
    assert bad.error().message().startswith("video_decode: cannot decode the video:")
    assert "empty" in empty.error().message()
    assert not ok.has_error()
    frames = ok.outputs["video_decode_frames"]
    assert frames.shape == (1, 6, 48, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(ok.outputs["video_decode_frame_indices"], [[0, 4, 8, 11, 15, 19]])
    info = ok.outputs["video_decode_info"]
    assert info.shape == (1, 3) and info.dtype == np.float32
    assert info[0, 0] == pytest.approx(25.0) and info[0, 1] == 20 and info[0, 2] == 0


def test_video_decode_rejects_an_unknown_decoder(monkeypatch):
    mod = load_model_py("video_decode", monkeypatch)
    with pytest.raises(ValueError, match="unknown decoder"):
        mod.TritonPythonModel().initialize(model_args("video_decode", decoder="opencv"))


def _analysis_json(num_kept: int = 2) -> dict:
    slots = [{"slot": s, "identity": s % num_kept, "frame": s, "dummy": s >= 12} for s in range(16)]
    identities = [
        {
            "id": k,
            "kept": True,
            "num_faces": 6,
            "faces": [{"frame": f, "box": [0, 0, 10, 10], "score": 0.99} for f in range(6)],
            "slots": [s["slot"] for s in slots if s["identity"] == k],
        }
        for k in range(num_kept)
    ]
    return {"clip": {"fps": 25.0}, "status": "ok", "identities": identities, "slots": slots}


def test_explain_ok_no_face_and_bad_request(monkeypatch):
    from mintime.explain import explain_video, render_result

    mod = load_model_py("explain", monkeypatch)
    model = mod.TritonPythonModel()
    model.initialize(model_args("explain"))
    rng = np.random.default_rng(0)
    attn = rng.random((1, 2, 4, 785), dtype=np.float32)
    attn /= attn.sum(-1, keepdims=True)
    ok_json = _analysis_json()
    no_face = {"clip": {}, "status": "no_face", "reason": "no face detected", "identities": [], "slots": []}

    owner = np.array([s % 2 if s < 12 else -1 for s in range(16)], np.int64)

    def req(js, logit=0.7, slot_identity=owner):
        return pb.request(
            temporal_logit=np.array([[logit]], np.float32),
            temporal_cls_attention=attn,
            face_slots_identity=slot_identity[None],
            face_slots_json=np.array([[json.dumps(js).encode() if js is not None else b"{not json"]], object),
        )

    responses = model.execute([req(ok_json), req(None), req(no_face, slot_identity=np.full(16, -1))])
    assert len(responses) == 3
    ok, bad, none = responses
    from mintime.networks import load_networks

    model = load_networks().model
    want = render_result(ok_json, explain_video(0.7, attn[0], owner, threshold=model["threshold"]), model)
    got = json.loads(ok.outputs["RESULT_JSON"][0, 0])
    assert got == json.loads(json.dumps(want))
    assert got["model"]["name"] == "mintime-sbi-lite0-v1"  # the committed repository serves the default
    assert got["label"] == "pristine"  # p = sigmoid(0.7) = 0.67 is below the default model's threshold
    assert ok.outputs["FAKE_PROBABILITY"][0, 0] == pytest.approx(1 / (1 + math.exp(-0.7)), abs=1e-6)
    np.testing.assert_allclose(
        ok.outputs["IDENTITY_SCORES"][0], [i["fake_score"] for i in want["identities"]]
    )
    assert bad.has_error() and bad.error().code == pb.TritonError.INVALID_ARG
    assert bad.error().message().startswith("explain: not a UTF-8 JSON string")
    assert math.isnan(none.outputs["FAKE_PROBABILITY"][0, 0])
    assert none.outputs["IDENTITY_SCORES"].shape == (1, 0)
    assert json.loads(none.outputs["RESULT_JSON"][0, 0])["label"] == "no_face"


class _Runner:
    """Stands in for the ONNX/torch runner: records batch sizes, features = per-slot mean pixel."""

    description = "stub"

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.fail = fail

    def __call__(self, inputs):
        faces = inputs["face_slots_faces"]
        self.batches.append(faces.shape[0])
        if self.fail:
            raise RuntimeError("out of memory")
        mean = faces.mean(axis=(2, 3, 4))
        return {
            "backbone_features": np.broadcast_to(mean[:, :, None, None, None], (*mean.shape, 5, 7, 7)).copy()
        }


def test_backbone_batches_requests_and_splits_outputs(monkeypatch):
    mod = load_model_py("backbone", monkeypatch)
    model = mod.TritonPythonModel()
    model.runner = _Runner()
    faces = [np.full((1, 16, 3, 224, 224), v, np.float32) for v in (1.0, 2.0, 3.0)]
    responses = model.execute([pb.request(face_slots_faces=f) for f in faces])
    assert model.runner.batches == [3], "the dynamic batch runs as one batch"
    assert len(responses) == 3
    for value, resp in zip((1.0, 2.0, 3.0), responses, strict=True):
        out = resp.outputs["backbone_features"]
        assert out.shape == (1, 16, 5, 7, 7)
        np.testing.assert_allclose(out, value)

    model.runner = _Runner(fail=True)
    responses = model.execute([pb.request(face_slots_faces=f) for f in faces[:2]])
    assert [r.error().message() for r in responses] == ["backbone: RuntimeError: out of memory"] * 2


def test_one_bad_request_fails_alone_in_a_batch(monkeypatch):
    """A request that makes the batch fail (here: NaN pixels the runner refuses) fails alone."""

    class Strict(_Runner):
        def __call__(self, inputs):
            if np.isnan(inputs["face_slots_faces"]).any():
                raise ValueError("faces contain NaN")
            return super().__call__(inputs)

    mod = load_model_py("backbone", monkeypatch)
    model = mod.TritonPythonModel()
    model.runner = Strict()
    faces = [np.full((1, 16, 3, 224, 224), v, np.float32) for v in (1.0, np.nan, 3.0)]
    responses = model.execute([pb.request(face_slots_faces=f) for f in faces])
    assert model.runner.batches == [1, 1], "the failed batch of 3 is retried one request at a time"
    assert [r.has_error() for r in responses] == [False, True, False]
    assert responses[1].error().code == pb.TritonError.INVALID_ARG
    assert responses[1].error().message() == "backbone: faces contain NaN"
    np.testing.assert_allclose(responses[0].outputs["backbone_features"], 1.0)
    np.testing.assert_allclose(responses[2].outputs["backbone_features"], 3.0)


def test_backbone_and_temporal_declare_their_contract_inputs(monkeypatch):
    from mintime import contract

    for name, spec in (("backbone", contract.BACKBONE), ("temporal", contract.TEMPORAL)):
        mod = load_model_py(name, monkeypatch)
        assert mod.TritonPythonModel.NETWORK == name
        assert mod.TritonPythonModel().spec == spec


@pytest.mark.needs_dali
def test_video_decode_dali_cpu_matches_pyav(monkeypatch, tmp_path):
    pytest.importorskip("av")
    from tests.helpers.media import make_clip, read_index_code

    clip = make_clip(tmp_path / "c.webm", frames=24, size=(96, 64), codec="libvpx-vp9")
    data = np.frombuffer(clip.read_bytes(), np.uint8)[None]
    outputs = {}
    for decoder in ("pyav", "dali_cpu"):
        mod = load_model_py("video_decode", monkeypatch)
        model = mod.TritonPythonModel()
        model.initialize(model_args("video_decode", num_frames="5", decoder=decoder))
        (resp,) = model.execute([pb.request(VIDEO=data)])
        assert not resp.has_error(), resp.error() and resp.error().message()
        outputs[decoder] = resp.outputs
    for name in ("video_decode_frame_indices", "video_decode_info"):
        np.testing.assert_array_equal(outputs["pyav"][name], outputs["dali_cpu"][name])
    frames = outputs["dali_cpu"]["video_decode_frames"][0]
    assert [read_index_code(f) for f in frames] == outputs["pyav"]["video_decode_frame_indices"][0].tolist()


def test_face_pipeline_batches_requests_and_a_bad_one_fails_alone(monkeypatch):
    """Several videos of different sizes in one execute run through FaceStage.batch together."""
    mod = load_model_py("face_pipeline", monkeypatch)
    model = mod.TritonPythonModel()
    model.initialize(model_args("face_pipeline"))
    calls = []
    real = model.stage.batch

    def recording(clips):
        calls.append([c.frames.shape for c in clips])
        return real(clips)

    model.stage.batch = recording
    rng = np.random.default_rng(0)

    def req(t, h, w, n_indices=None):
        return pb.request(
            video_decode_frames=rng.integers(0, 255, (1, t, h, w, 3), np.uint8),
            video_decode_frame_indices=np.arange(n_indices or t, dtype=np.int64)[None],
            video_decode_info=np.array([[25.0, t, 0.0]], np.float32),
        )

    responses = model.execute([req(4, 48, 64), req(4, 48, 64, n_indices=3), req(3, 64, 96)])
    assert calls == [[(4, 48, 64, 3), (3, 64, 96, 3)]], "the two good videos share one batched pass"
    ok1, bad, ok2 = responses
    assert bad.has_error() and bad.error().code == pb.TritonError.INVALID_ARG
    assert "4 frames but 3 frame indices" in bad.error().message()
    for ok in (ok1, ok2):
        assert not ok.has_error()
        assert ok.outputs["face_slots_faces"].shape == (1, 16, 3, 224, 224)
        assert ok.outputs["face_slots_identity"].tolist() == [[-1] * 16]  # noise: no face
        assert json.loads(ok.outputs["face_slots_json"][0, 0])["status"] == "no_face"


def test_tensors_cross_by_dlpack_when_not_on_the_host(monkeypatch):
    """A tensor that is not in host memory is taken by DLPack (a torch tensor, no copy); outputs that are torch
    tensors on the CPU leave as numpy."""
    import torch
    from torch.utils import dlpack

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb.module())
    from mintime.serving.triton_models import input_array, output_tensor

    data = torch.arange(12, dtype=torch.float32).reshape(3, 4)

    class DeviceTensor(pb.Tensor):
        def is_cpu(self) -> bool:
            return False

        def to_dlpack(self):
            return dlpack.to_dlpack(data)

    got = input_array(DeviceTensor("x", data.numpy()))
    assert isinstance(got, torch.Tensor) and got.data_ptr() == data.data_ptr()  # the same memory
    out = output_tensor("y", data * 2)
    assert isinstance(out.as_numpy(), np.ndarray)
    np.testing.assert_array_equal(out.as_numpy(), (data * 2).numpy())
    np.testing.assert_array_equal(input_array(pb.Tensor("z", np.ones(2))), np.ones(2))
