"""TensorRT export: profiles from the production configs, the strongly typed build against the TensorRT 10 and
11 Python APIs (stand-ins in ``trt_stubs.py``, checked against the real bindings wheels), plan tags, and the
real build where TensorRT and a GPU exist."""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from export import tensorrt as trt_export
from export.tensorrt import (
    DeviceInfo,
    EngineBuildError,
    batch_profile,
    build_engine,
    config_batch_range,
    plan_matches,
    production_profile,
    read_plan_tag,
    tensorrt_available,
)
from tests.conftest import REPO
from tests.export.trt_stubs import COMMON_NAMES, REMOVED_IN_11, make_trt

sys.path.insert(0, str(REPO / "deploy"))
import image  # noqa: E402

H200 = DeviceInfo("NVIDIA H200", "9.0")
TRT_VERSIONS = ("10.13.3.9", image.release()["tensorrt"])


def test_batch_profile_varies_only_the_batch():
    prof = batch_profile({"face_slots_faces": (16, 3, 224, 224)}, min_batch=1, opt_batch=16, max_batch=32)
    assert prof == {"face_slots_faces": ((1, 16, 3, 224, 224), (16, 16, 3, 224, 224), (32, 16, 3, 224, 224))}
    with pytest.raises(ValueError, match="min_batch"):
        batch_profile({"x": (3,)}, min_batch=4, opt_batch=2, max_batch=8)
    with pytest.raises(ValueError, match="fixed"):
        batch_profile({"x": (-1, 3)}, min_batch=1, opt_batch=1, max_batch=1)


@pytest.mark.parametrize(
    ("name", "max_batch", "preferred"), [("backbone", 32, [8, 16, 32]), ("temporal", 64, [16, 32, 64])]
)
def test_profiles_follow_the_production_configs(name: str, max_batch: int, preferred: list[int]):
    config = REPO / "model_repository" / name / "configs" / "production.pbtxt"
    assert config_batch_range(config) == (max_batch, preferred)
    prof = production_profile({"x": (16, 4)}, config)
    assert prof["x"] == ((1, 16, 4), (preferred[-1], 16, 4), (max_batch, 16, 4))


def test_config_without_batching_is_refused(tmp_path):
    cfg = tmp_path / "c.pbtxt"
    cfg.write_text('name: "x"\n# max_batch_size: 8\nmax_batch_size: 0\n')
    with pytest.raises(ValueError, match="positive max_batch_size"):
        config_batch_range(cfg)
    cfg.write_text("max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 2, 8 ] }\n")
    with pytest.raises(ValueError, match=r"preferred_batch_size \[8\] above max_batch_size 4"):
        production_profile({"x": (3,)}, cfg)


def test_without_tensorrt_the_build_says_why(tmp_path):
    ok, why = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is installed here")
    assert "TensorRT is not available" in why and "NGC" in why
    with pytest.raises(RuntimeError, match="TensorRT is not available"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", profiles=[])


def test_export_module_uses_no_name_tensorrt_11_removed():
    """Attribute accesses and getattr() names in export/tensorrt.py: none of the removed API."""
    tree = ast.parse(Path(trt_export.__file__).read_text())
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {
        n.args[1].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "id", None) == "getattr"
        and len(n.args) > 1
        and isinstance(n.args[1], ast.Constant)
    }
    assert not used & set(REMOVED_IN_11), used & set(REMOVED_IN_11)
    assert "STRONGLY_TYPED" in used


# --- the build, against TensorRT 10 and 11 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def temporal_graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny temporal model exported to ONNX in fp32 and fp16 (float32 I/O), as `mintime export` does."""
    pytest.importorskip("onnx")
    from export.modules import HalfPrecision, dynamic_batch_axes, example_inputs, export_module, io_names
    from export.onnx import export_onnx
    from tests.export.conftest import tiny_models

    d = tmp_path_factory.mktemp("trt_graphs")
    module = export_module("temporal", tiny_models(channels=8))
    names_in, names_out = io_names("temporal")
    out = {}
    for kind, mod in (
        ("fp32", module),
        ("fp16", HalfPrecision(export_module("temporal", tiny_models(channels=8)))),
    ):
        path = d / f"{kind}.onnx"
        export_onnx(
            mod,
            path,
            example_inputs=example_inputs("temporal", 1, channels=8),
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=dynamic_batch_axes("temporal"),
            check=False,
        )
        out[kind] = path
    return out


def _temporal_profile() -> dict:
    from export.modules import example_inputs, io_names

    names_in, _ = io_names("temporal")
    dims = {
        n: tuple(x.shape[1:])
        for n, x in zip(names_in, example_inputs("temporal", 1, channels=8), strict=True)
    }
    return production_profile(dims, REPO / "model_repository" / "temporal" / "configs" / "production.pbtxt")


@pytest.mark.parametrize("version", TRT_VERSIONS)
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_strongly_typed_build_on_tensorrt_10_and_11(temporal_graphs, tmp_path, version: str, precision: str):
    trt = make_trt(version)
    plan = build_engine(
        temporal_graphs[precision],
        tmp_path / "model.plan",
        profiles=[_temporal_profile()],
        device=H200,
        trt_module=trt,
    )
    built = json.loads(plan.read_bytes())
    assert built["version"] == version and built["strongly_typed"]
    assert built["flags"] == [], "no builder precision flag: the graph's types decide"
    assert ("create_network", 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) in trt.calls
    assert built["precisions"] == ["float16"] if precision == "fp16" else ["float32"]
    assert built["workspace"] == 4 << 30
    (profile,) = built["profiles"]
    assert profile["backbone_features"] == [[1, 16, 8, 7, 7], [64, 16, 8, 7, 7], [64, 16, 8, 7, 7]]
    assert set(profile) == {"backbone_features", "face_slots_mask", "face_slots_identities_mask",
                            "face_slots_size_ids", "face_slots_positions"}  # fmt: skip
    io = trt_export.engine_io(plan, trt_module=trt)
    assert io["temporal_logit"] == {"mode": "output", "dtype": "DataType.FLOAT", "shape": (-1, 1)}
    assert io["face_slots_mask"]["mode"] == "input" and io["face_slots_mask"]["shape"] == (-1, 16)
    assert read_plan_tag(plan) == {
        "tensorrt": version,
        "gpu": {"name": "NVIDIA H200", "compute_capability": "9.0"},
    }
    assert plan_matches(plan, tensorrt_version=version, device=H200) == (True, "")


def test_tensorrt_10_refuses_precision_flags_on_a_strongly_typed_network(temporal_graphs, tmp_path):
    """What the old code did (BuilderFlag.FP16 on TensorRT 10) fails on a strongly typed network: never do it."""
    trt = make_trt("10.13.3.9")
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    assert trt.OnnxParser(network, trt.Logger()).parse_from_file(str(temporal_graphs["fp16"]))
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    assert builder.build_serialized_network(network, config) is None
    trt11 = make_trt("11.1.0.106")
    assert not hasattr(trt11.BuilderFlag, "FP16") and not hasattr(trt11.Builder, "platform_has_fast_fp16")


@pytest.mark.parametrize("version", TRT_VERSIONS)
def test_build_errors_are_loud(temporal_graphs, tmp_path, version: str):
    trt = make_trt(version)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx graph")
    with pytest.raises(EngineBuildError, match=r"cannot parse .*garbage\.onnx: ModelImporter"):
        build_engine(
            garbage, tmp_path / "a.plan", profiles=[_temporal_profile()], device=H200, trt_module=trt
        )
    partial = {k: v for k, v in _temporal_profile().items() if k != "face_slots_mask"}
    with pytest.raises(EngineBuildError, match=r"missing \['face_slots_mask'\]"):
        build_engine(
            temporal_graphs["fp32"], tmp_path / "b.plan", profiles=[partial], device=H200, trt_module=trt
        )
    with pytest.raises(ValueError, match="at least one optimization profile"):
        build_engine(temporal_graphs["fp32"], tmp_path / "c.plan", profiles=[], device=H200, trt_module=trt)
    assert not list(tmp_path.glob("*.plan"))


def test_plan_tag_mismatch_means_rebuild(tmp_path):
    plan = tmp_path / "model.plan"
    assert plan_matches(plan, tensorrt_version="11.1.0.106", device=H200)[1].startswith("no plan at")
    plan.write_bytes(b"engine")
    ok, why = plan_matches(plan, tensorrt_version="11.1.0.106", device=H200)
    assert not ok and "has no tag" in why
    (tmp_path / "model.plan.tag.json").write_text(json.dumps(trt_export.plan_tag("10.13.3.9", H200)))
    ok, why = plan_matches(plan, tensorrt_version="11.1.0.106", device=H200)
    assert not ok and "built by TensorRT 10.13.3.9, this is TensorRT 11.1.0.106" in why
    ok, why = plan_matches(plan, tensorrt_version="10.13.3.9", device=DeviceInfo("NVIDIA L4", "8.9"))
    assert not ok and "NVIDIA L4" in why and "NVIDIA H200" in why
    assert plan_matches(plan, tensorrt_version="10.13.3.9", device=H200) == (True, "")


# --- the stand-ins against the real bindings ----------------------------------------------------------------------


def _online() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def bindings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The compiled module of the real tensorrt-cu13-bindings wheels (~1.2 MB each) of TensorRT 10 and 11."""
    if not _online():
        pytest.skip("PyPI is not reachable: cannot fetch the TensorRT bindings wheels")
    d = tmp_path_factory.mktemp("trt_wheels")
    out = {}
    for version in TRT_VERSIONS:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--platform", "manylinux_2_28_x86_64", "--python-version", "3.12", "-d", str(d),
               f"tensorrt-cu13-bindings=={version}"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        (wheel,) = d.glob(f"tensorrt_cu13_bindings-{version}-*.whl")
        with zipfile.ZipFile(wheel) as z:
            out[version] = z.read("tensorrt_bindings/tensorrt.so")
            init = z.read("tensorrt_bindings/__init__.py").decode()
        assert f'__version__ = "{version}"' in init and "def nptype" in init
    return out


def _defines(blob: bytes, name: str) -> bool:
    """A pybind11 module keeps its attribute names as NUL-terminated strings (tails may be shared)."""
    return re.search(re.escape(name.encode()) + rb"\x00", blob) is not None


def test_stubs_match_the_real_tensorrt_bindings(bindings: dict[str, bytes]):
    for version, blob in bindings.items():
        missing = [n for n in COMMON_NAMES if not _defines(blob, n)]
        assert not missing, f"TensorRT {version} lacks {missing}"
    v10, v11 = (bindings[v] for v in TRT_VERSIONS)
    assert all(_defines(v10, n) for n in REMOVED_IN_11)
    assert not [n for n in REMOVED_IN_11 if _defines(v11, n)], "TensorRT 11 still defines a removed name"
    for version in TRT_VERSIONS:  # the stubs have exactly that difference
        trt = make_trt(version)
        has = {
            n
            for n in REMOVED_IN_11
            if any(hasattr(o, n) for o in (trt.Builder, trt.BuilderFlag, trt.NetworkDefinitionCreationFlag))
        }
        assert has == (set(REMOVED_IN_11) if version.startswith("10.") else set())


# --- the real thing -------------------------------------------------------------------------------------------


@pytest.mark.needs_trt
@pytest.mark.needs_cuda
def test_build_engine_for_the_tiny_temporal_model(temporal_graphs, tmp_path):
    import numpy as np
    import torch

    from export.modules import HalfPrecision, example_inputs, export_module, io_names
    from export.tensorrt import engine_io, run_engine
    from tests.export.conftest import tiny_models

    module = export_module("temporal", tiny_models(channels=8))
    names_in, names_out = io_names("temporal")
    plan = build_engine(temporal_graphs["fp16"], tmp_path / "model.plan", profiles=[_temporal_profile()])
    io = engine_io(plan)
    assert set(io) == set(names_in + names_out) and io["temporal_logit"]["shape"][0] == -1
    assert plan_matches(plan)[0]
    inputs = example_inputs("temporal", 3, channels=8, seed=2)
    got = run_engine(plan, {n: x.numpy() for n, x in zip(names_in, inputs, strict=True)})
    with torch.inference_mode():
        logit, _ = module(*inputs)
        half, _ = HalfPrecision(export_module("temporal", tiny_models(channels=8)))(*inputs)
    np.testing.assert_allclose(got["temporal_logit"], logit.numpy(), atol=5e-2)
    np.testing.assert_allclose(got["temporal_logit"], half.numpy(), atol=2e-2)
