"""Pure helpers behind the Python-backend models (mintime.serving.backend, mintime.engines)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mintime.serving import backend


def test_model_parameters_flattens_string_values():
    cfg = {"parameters": {"a": {"string_value": "1"}, "b": {"string_value": ""}}}
    assert backend.model_parameters(cfg) == {"a": "1", "b": ""}
    assert backend.model_parameters({}) == {}


@pytest.mark.parametrize(
    ("kind", "device_id", "requested", "expected"),
    [
        ("CPU", 0, "", "cpu"),
        ("GPU", 2, "", "cuda:2"),
        ("GPU", 1, "cuda", "cuda:1"),
        ("GPU", 1, "cpu", "cpu"),
        ("CPU", 0, "cuda:3", "cuda:3"),
        ("gpu", "1", "", "cuda:1"),
    ],
)
def test_instance_device(kind, device_id, requested, expected):
    assert backend.instance_device(kind, device_id, requested) == expected


def test_resolve_checkpoint_parameter_env_and_default(tmp_path, monkeypatch):
    ck = tmp_path / "model" / "w.pt"
    ck.parent.mkdir()
    ck.write_bytes(b"x")
    monkeypatch.delenv(backend.CHECKPOINT_ENV, raising=False)
    assert backend.resolve_checkpoint("", tmp_path) is None
    assert backend.resolve_checkpoint("model/w.pt", tmp_path) == str(ck)  # relative to the model folder
    monkeypatch.setenv(backend.CHECKPOINT_ENV, str(ck))
    assert backend.resolve_checkpoint("", tmp_path / "elsewhere") == str(ck)
    with pytest.raises(FileNotFoundError, match="model parameter 'checkpoint'"):
        backend.resolve_checkpoint("missing.pt", tmp_path)
    monkeypatch.setenv(backend.CHECKPOINT_ENV, str(tmp_path / "gone.pt"))
    with pytest.raises(FileNotFoundError, match=backend.CHECKPOINT_ENV):
        backend.resolve_checkpoint("", tmp_path)


def test_pipeline_config_from_parameters_types_and_errors():
    from mintime.config import PipelineConfig, from_parameters

    cfg = from_parameters(
        {"num_frames": "16", "detect_scale": "0.25", "thresholds": "0.6, 0.7 0.8", "checkpoint": "ignored"},
        device="cuda:1",
    )
    assert cfg == PipelineConfig(
        num_frames=16, detect_scale=0.25, thresholds=(0.6, 0.7, 0.8), device="cuda:1"
    )
    with pytest.raises(ValueError):
        from_parameters({"num_frames": "many"}, device="cpu")
    with pytest.raises(ValueError, match="expected 3 values"):
        from_parameters({"thresholds": "0.5"}, device="cpu")


def test_clip_round_trip():
    from mintime.video import DecodedClip

    frames = np.random.default_rng(0).integers(0, 256, (4, 6, 8, 3), np.uint8)
    clip = DecodedClip(
        frames=frames,
        indices=np.array([0, 3, 6, 9]),
        fps=29.97,
        width=8,
        height=6,
        total_frames=10,
        rotation=90,
    )
    arrays = backend.clip_to_arrays(clip)
    assert arrays["video_decode_info"].dtype == np.float32
    np.testing.assert_allclose(arrays["video_decode_info"], [29.97, 10, 90], rtol=1e-6)
    back = backend.clip_from_arrays(*arrays.values())
    np.testing.assert_array_equal(back.frames, frames)  # frames are upright already: not rotated again
    np.testing.assert_array_equal(back.indices, [0, 3, 6, 9])
    assert (back.width, back.height, back.total_frames, back.rotation) == (8, 6, 10, 90)
    with pytest.raises(ValueError, match="3 frames but 4"):
        backend.clip_from_arrays(
            frames[:3], arrays["video_decode_frame_indices"], arrays["video_decode_info"]
        )
    with pytest.raises(ValueError, match="expected"):
        backend.clip_to_arrays(DecodedClip(np.zeros((0, 6, 8, 3), np.uint8), np.zeros(0), 25.0, 8, 6, 0))


def test_json_tensor_round_trip():
    obj = {"a": [1, 2.5, None], "b": "é"}
    t = backend.json_to_tensor(obj)
    assert t.shape == (1, 1) and t.dtype == object and isinstance(t[0, 0], bytes)
    assert backend.tensor_to_json(t) == obj
    assert backend.tensor_to_json(np.array([[json.dumps(obj)]], dtype=object)) == obj


def test_stack_and_split_inputs():
    per_request = [{"x": np.full((n, 2), n, np.float32), "m": np.ones((n, 3), bool)} for n in (1, 2, 1)]
    batch, sizes = backend.stack_inputs(per_request)
    assert sizes == [1, 2, 1] and batch["x"].shape == (4, 2) and batch["m"].shape == (4, 3)
    parts = backend.split_outputs({"y": batch["x"] * 10}, sizes)
    assert [p["y"].shape[0] for p in parts] == [1, 2, 1]
    assert [float(p["y"][0, 0]) for p in parts] == [10.0, 20.0, 10.0]


def test_load_runner_validates_arguments(tmp_path):
    from mintime.engines import load_runner

    with pytest.raises(ValueError, match="unknown network"):
        load_runner("head")
    with pytest.raises(ValueError, match="unknown runtime"):
        load_runner("backbone", runtime="tensorrt")
    with pytest.raises(FileNotFoundError, match="mintime export"):
        load_runner("backbone", version_dir=tmp_path, runtime="onnx")
