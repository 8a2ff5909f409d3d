"""export_to_repository: version N+1 written and checked, configs updated, old versions pruned, failures clean."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export import repository as repo
from export.onnx import ParityError
from export.workflow import ExportOptions, export_to_repository
from tests.export.conftest import tiny_models

SOURCE = {"checkpoint": {"path": "/weights/tiny.pt", "sha256": "0" * 64}}


def test_export_writes_checked_versions_and_updates_configs(repository_copy, monkeypatch):
    monkeypatch.delenv("MINTIME_CHECKPOINT", raising=False)
    loaded = tiny_models(channels=8)
    opts = ExportOptions(model_repository=repository_copy, keep=2, fp16=True)
    results = export_to_repository(loaded, opts, SOURCE)
    assert [r.network for r in results] == ["backbone", "temporal"]
    for r in results:
        model_dir = repository_copy / r.network
        assert r.version == 2 and repo.versions(model_dir) == [1, 2]
        assert {p.name for p in (model_dir / "2").iterdir()} >= {"model.onnx", "model.py", "export.json"}
        assert (model_dir / "2" / "model.py").read_text() == (model_dir / "1" / "model.py").read_text()
        record = json.loads((model_dir / "2" / "export.json").read_text())
        assert record["source"] == SOURCE and record["network"] == r.network
        assert record["parity_fp32"]["ok"] and set(record["parity_fp32"]["max_abs_error"]) == {"1", "3"}
        assert record["files"]["model.onnx"]["sha256"] == repo.sha256_file(model_dir / "2" / "model.onnx")
        assert record["tensorrt"]["built"] is False and "TensorRT" in record["tensorrt"]["reason"]
        assert isinstance(record["fp16"]["kept"], bool)
        assert (model_dir / "2" / "model_fp16.onnx").is_file() == record["fp16"]["kept"]
        assert not list(model_dir.glob(".export-*")), "no staging folder left"
        assert (model_dir / "2" / repo.MARKER_FILENAME).is_file() and repo.version_problem(
            model_dir / "2"
        ) is None
    assert results[0].dims == {"backbone_features": [16, 8, 7, 7]}
    assert results[1].dims == {"temporal_cls_attention": [2, 2, 785]}

    prod = {
        m: repo.parse_config((repository_copy / m / "configs" / "production.pbtxt").read_text())
        for m in ("backbone", "temporal")
    }
    assert list(prod["backbone"].output[0].dims) == [16, 8, 7, 7]
    assert list(prod["temporal"].input[0].dims) == [16, 8, 7, 7]
    assert list(prod["temporal"].output[1].dims) == [2, 2, 785]
    default = repo.parse_config((repository_copy / "temporal" / "config.pbtxt").read_text())
    assert list(default.input[0].dims) == [16, -1, 7, 7], (
        "the Python-backend config stays checkpoint-agnostic"
    )

    # the Python-backend loader serves the new version with ONNX Runtime, equal to torch
    from export.modules import example_inputs
    from mintime.engines import OnnxRunner, load_runner

    runner = load_runner("temporal", version_dir=repository_copy / "temporal" / "2")
    assert isinstance(runner, OnnxRunner)
    inputs = example_inputs("temporal", 2, channels=8, seed=3)
    names = [
        "backbone_features",
        "face_slots_mask",
        "face_slots_identities_mask",
        "face_slots_size_ids",
        "face_slots_positions",
    ]
    out = runner({n: x.numpy() for n, x in zip(names, inputs, strict=True)})
    import torch

    with torch.inference_mode():
        logit, _ = loaded.temporal(*inputs, return_attention=True)
    np.testing.assert_allclose(out["temporal_logit"], logit.numpy(), atol=1e-5)
    if (
        repository_copy / "temporal" / "2" / "model_fp16.onnx"
    ).is_file():  # fp16 held: servable as "onnx_fp16"
        half = load_runner("temporal", version_dir=repository_copy / "temporal" / "2", runtime="onnx_fp16")
        out16 = half({n: x.numpy() for n, x in zip(names, inputs, strict=True)})
        np.testing.assert_allclose(out16["temporal_logit"], logit.numpy(), atol=2e-2)

    # a second export with keep=1 leaves only the newest version
    results = export_to_repository(
        loaded, ExportOptions(model_repository=repository_copy, keep=1, fp16=False), SOURCE
    )
    for r in results:
        assert r.version == 3 and r.removed_versions == [2]
        assert repo.versions(repository_copy / r.network) == [1, 3], "the committed version 1 is never pruned"
        assert (repository_copy / r.network / "3" / "model.py").is_file()
        assert repo.version_problem(repository_copy / r.network / "3") is None


def test_failed_export_leaves_the_repository_unchanged(repository_copy):
    before = sorted(str(p.relative_to(repository_copy)) for p in repository_copy.rglob("*"))
    configs = {p: p.read_text() for p in repository_copy.rglob("*.pbtxt")}
    opts = ExportOptions(model_repository=repository_copy, networks=["backbone"], fp16=False, atol=-1.0)
    with pytest.raises(ParityError):
        export_to_repository(tiny_models(), opts, SOURCE)
    after = sorted(str(p.relative_to(repository_copy)) for p in repository_copy.rglob("*"))
    assert after == before
    assert all(p.read_text() == text for p, text in configs.items())


def test_tensorrt_required_but_missing_fails_cleanly(repository_copy):
    from export.tensorrt import tensorrt_available

    if tensorrt_available()[0]:
        pytest.skip("TensorRT is installed here")
    opts = ExportOptions(model_repository=repository_copy, networks=["temporal"], fp16=False, trt="require")
    with pytest.raises(RuntimeError, match="TensorRT is not available"):
        export_to_repository(tiny_models(), opts, SOURCE)
    assert repo.versions(repository_copy / "temporal") == [1]
