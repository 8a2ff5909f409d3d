"""TensorRT helpers: the pure profile builder everywhere; the engine build where TensorRT exists."""

from __future__ import annotations

import pytest

from export.tensorrt import batch_profile, build_engine, tensorrt_available


def test_batch_profile_varies_only_the_batch():
    prof = batch_profile({"face_slots_faces": (16, 3, 224, 224)}, min_batch=1, opt_batch=16, max_batch=32)
    assert prof == {"face_slots_faces": ((1, 16, 3, 224, 224), (16, 16, 3, 224, 224), (32, 16, 3, 224, 224))}
    with pytest.raises(ValueError, match="min_batch"):
        batch_profile({"x": (3,)}, min_batch=4, opt_batch=2, max_batch=8)
    with pytest.raises(ValueError, match="fixed"):
        batch_profile({"x": (-1, 3)}, min_batch=1, opt_batch=1, max_batch=1)


def test_without_tensorrt_the_build_says_why(tmp_path):
    ok, why = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is installed here")
    assert "TensorRT is not available" in why and "NGC" in why
    with pytest.raises(RuntimeError, match="TensorRT is not available"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", profiles=[])


@pytest.mark.needs_trt
@pytest.mark.needs_cuda
def test_build_engine_for_the_tiny_temporal_model(tmp_path):
    import numpy as np
    import torch

    from export.modules import dynamic_batch_axes, example_inputs, export_module, io_names
    from export.onnx import export_onnx
    from export.tensorrt import engine_io, run_engine
    from tests.export.conftest import tiny_models

    module = export_module("temporal", tiny_models(channels=8))
    names_in, names_out = io_names("temporal")
    onnx_path = tmp_path / "model.onnx"
    export_onnx(
        module,
        onnx_path,
        example_inputs=example_inputs("temporal", 1, channels=8),
        input_names=names_in,
        output_names=names_out,
        dynamic_axes=dynamic_batch_axes("temporal"),
    )
    dims = {
        n: tuple(x.shape[1:])
        for n, x in zip(names_in, example_inputs("temporal", 1, channels=8), strict=True)
    }
    plan = build_engine(
        onnx_path,
        tmp_path / "model.plan",
        profiles=[batch_profile(dims, min_batch=1, opt_batch=4, max_batch=8)],
    )
    io = engine_io(plan)
    assert set(io) == set(names_in + names_out) and io["temporal_logit"]["shape"][0] == -1
    inputs = example_inputs("temporal", 3, channels=8, seed=2)
    got = run_engine(plan, {n: x.numpy() for n, x in zip(names_in, inputs, strict=True)})
    with torch.inference_mode():
        logit, _ = module(*inputs)
    np.testing.assert_allclose(got["temporal_logit"], logit.numpy(), atol=5e-2)
