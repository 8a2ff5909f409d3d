"""Both exported graphs match PyTorch in ONNX Runtime at the traced batch (1) and another batch (3)."""

from __future__ import annotations

import numpy as np
import pytest

from export.modules import dynamic_batch_axes, example_inputs, export_module, io_names
from export.onnx import ParityError, export_onnx, onnx_parity, run_onnx, to_numpy_inputs
from tests.export.conftest import tiny_models

torch = pytest.importorskip("torch")


def _export(which: str, loaded, path, channels: int):
    module = export_module(which, loaded)
    names_in, names_out = io_names(which)
    report = export_onnx(
        module,
        path,
        example_inputs=example_inputs(which, 1, channels=channels),
        input_names=names_in,
        output_names=names_out,
        dynamic_axes=dynamic_batch_axes(which),
        check_inputs=[example_inputs(which, 3, channels=channels, seed=1)],
    )
    return module, report


def test_temporal_tiny_parity_batch_1_and_3(tmp_path):
    loaded = tiny_models(channels=16)
    module, report = _export("temporal", loaded, tmp_path / "t.onnx", 16)
    assert report.ok and set(report.max_abs) == {1, 3}
    # an independent batch of 3 with other masks, compared here (not by the exporter)
    inputs = example_inputs("temporal", 3, channels=16, seed=5)
    logit, attn = run_onnx(
        tmp_path / "t.onnx", to_numpy_inputs(inputs, io_names("temporal")[0]), io_names("temporal")[1]
    )
    with torch.inference_mode():
        ref_logit, ref_attn = module(*inputs)
    assert logit.shape == (3, 1) and attn.shape == (3, 2, 2, 785)
    np.testing.assert_allclose(logit, ref_logit.numpy(), atol=1e-5)
    np.testing.assert_allclose(attn, ref_attn.numpy(), atol=1e-6)
    # the CLS attention rows of the real backbone slots are a distribution over the visible tokens
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-4)


def test_backbone_lite0_parity_batch_1_and_3(tmp_path):
    from types import SimpleNamespace

    from mintime.models import create_backbone

    loaded = SimpleNamespace(backbone=create_backbone("efficientnet_lite0", pretrained=True).eval())
    module, report = _export("backbone", loaded, tmp_path / "b.onnx", 1280)
    assert report.ok
    assert report.max_abs[3]["backbone_features"] < 1e-3
    out = run_onnx(
        tmp_path / "b.onnx",
        {"face_slots_faces": example_inputs("backbone", 2, seed=9)[0].numpy()},
        ["backbone_features"],
    )[0]
    assert out.shape == (2, 16, 1280, 7, 7)


def test_parity_failure_raises(tmp_path):
    loaded = tiny_models()
    module = export_module("backbone", loaded)
    names_in, names_out = io_names("backbone")
    path = tmp_path / "b.onnx"
    export_onnx(
        module,
        path,
        example_inputs=example_inputs("backbone", 1),
        input_names=names_in,
        output_names=names_out,
        dynamic_axes=dynamic_batch_axes("backbone"),
        check=False,
    )
    with torch.no_grad():
        module.backbone.conv.bias.add_(1.0)  # the graph no longer matches the module
    report = onnx_parity(
        module, path, [example_inputs("backbone", 1)], input_names=names_in, output_names=names_out
    )
    assert not report.ok and "backbone_features" in report.failures()[0]
    with pytest.raises(ParityError, match="differs from PyTorch"):
        export_onnx(
            module,
            tmp_path / "b2.onnx",
            example_inputs=example_inputs("backbone", 1),
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=dynamic_batch_axes("backbone"),
            atol=-1.0,
        )


def test_batch_dimension_is_not_baked_in(tmp_path):
    import onnx

    loaded = tiny_models()
    _export("backbone", loaded, tmp_path / "b.onnx", 8)
    graph = onnx.load(str(tmp_path / "b.onnx")).graph
    for value in (*graph.input, *graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch", value.name
