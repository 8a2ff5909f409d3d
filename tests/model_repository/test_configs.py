"""Every committed config (default, production, gpu) parses and agrees with mintime.contract and the ensemble."""

from __future__ import annotations

from pathlib import Path

import pytest

from mintime import contract
from tests.conftest import REPO

text_format = pytest.importorskip("google.protobuf.text_format")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

REPOSITORY = REPO / "model_repository"
SPECS = {spec.name: spec for spec in (contract.ENSEMBLE, *contract.MODELS)}
VARIANTS = ("config.pbtxt", "configs/production.pbtxt", "configs/gpu.pbtxt")
CONFIGS = [(name, variant) for name in SPECS for variant in VARIANTS]
DTYPE = model_config_pb2.DataType


def load(name: str, variant: str):
    path = REPOSITORY / name / variant
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def dims_match(config_dims: list[int], contract_dims: tuple[int, ...]) -> bool:
    """Same rank; equal where the contract fixes a dim (-1 in the contract: any value the deployment fixes)."""
    return len(config_dims) == len(contract_dims) and all(
        c == -1 or c == d for c, d in zip(contract_dims, config_dims, strict=True)
    )


def test_repository_has_exactly_the_contract_models():
    found = {p.name for p in REPOSITORY.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert found == set(SPECS)


@pytest.mark.parametrize(("name", "variant"), CONFIGS)
def test_config_matches_contract(name: str, variant: str):
    cfg = load(name, variant)
    spec = SPECS[name]
    assert cfg.name == name
    assert cfg.max_batch_size > 0, "every model batches (one video per request = batch 1)"
    for kind, tensors, expected in (("input", cfg.input, spec.inputs), ("output", cfg.output, spec.outputs)):
        assert [t.name for t in tensors] == [t.name for t in expected], f"{kind} names"
        for t, e in zip(tensors, expected, strict=True):
            assert DTYPE.Name(t.data_type) == e.dtype, f"{name}.{t.name} dtype"
            assert dims_match(list(t.dims), e.dims), (
                f"{name}.{t.name} dims {list(t.dims)} vs contract {e.dims}"
            )


@pytest.mark.parametrize("variant", VARIANTS)
def test_ensemble_wiring(variant: str):
    cfg = load("mintime", variant)
    assert cfg.platform == "ensemble"
    steps = cfg.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [m.name for m in contract.MODELS]
    available = {t.name for t in cfg.input}
    produced: set[str] = set()
    consumed: set[str] = set()
    for step in steps:
        spec = SPECS[step.model_name]
        step_cfg = load(step.model_name, variant)
        assert cfg.max_batch_size <= step_cfg.max_batch_size
        assert set(step.input_map) == {t.name for t in spec.inputs}, step.model_name
        assert set(step.output_map) == {t.name for t in spec.outputs}, step.model_name
        for key, value in step.input_map.items():
            assert value in available, f"{step.model_name}: input {key} <- {value} is not produced earlier"
            consumed.add(value)
        for value in step.output_map.values():
            assert value not in available, f"{value} produced twice"
            available.add(value)
            produced.add(value)
    outputs = {t.name for t in cfg.output}
    assert outputs <= produced
    assert produced - outputs <= consumed, "every intermediate tensor is consumed by a later step"


def test_production_variants_use_gpu_runtimes():
    for name in ("backbone", "temporal"):
        cfg = load(name, "configs/production.pbtxt")
        assert cfg.platform == "tensorrt_plan"
        assert cfg.HasField("dynamic_batching") and cfg.max_batch_size >= 8
        assert all(g.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU for g in cfg.instance_group)
        assert all(d > 0 for t in (*cfg.input, *cfg.output) for d in t.dims), "TensorRT configs fix every dim"
    decode = load("video_decode", "configs/production.pbtxt")
    assert decode.backend == "python" and decode.parameters["decoder"].string_value == "dali_mixed"
    assert all(g.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU for g in decode.instance_group)
    face = load("face_pipeline", "configs/production.pbtxt")
    assert face.backend == "python" and face.parameters["device"].string_value == "cuda"
    assert all(g.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU for g in face.instance_group)
    # the two engines agree on the feature channels
    backbone = load("backbone", "configs/production.pbtxt").output[0].dims
    temporal = load("temporal", "configs/production.pbtxt").input[0].dims
    assert list(backbone) == list(temporal)


@pytest.mark.parametrize("name", [m.name for m in contract.MODELS])
def test_default_variant_runs_on_the_python_backend(name: str):
    cfg = load(name, "config.pbtxt")
    assert cfg.backend == "python"
    assert (REPOSITORY / name / "1" / "model.py").is_file()
    assert all(g.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU for g in cfg.instance_group)
    if name in ("backbone", "temporal"):
        assert cfg.HasField("dynamic_batching") and cfg.max_batch_size > 1


def test_pipeline_parameters_match_the_in_process_defaults():
    from mintime.config import PipelineConfig
    from mintime.config import from_parameters as pipeline_config_from_parameters
    from mintime.serving.backend import model_parameters

    def params(name: str, variant: str) -> dict[str, str]:
        from google.protobuf.json_format import MessageToDict

        return model_parameters(MessageToDict(load(name, variant), preserving_proto_field_name=True))

    for variant in VARIANTS:
        assert int(params("video_decode", variant)["num_frames"]) == PipelineConfig().num_frames
        cfg = pipeline_config_from_parameters(params("face_pipeline", variant), device="cpu")
        assert cfg == PipelineConfig(), "the server's face pipeline = `mintime predict` defaults"


def test_ensemble_keeps_an_empty_version_folder():
    assert (REPOSITORY / "mintime" / "1" / ".gitkeep").is_file()


@pytest.mark.parametrize("path", sorted(REPOSITORY.glob("*/1/model.py")), ids=lambda p: p.parent.parent.name)
def test_model_py_is_thin_and_compiles(path: Path):
    source = path.read_text()
    compile(source, str(path), "exec")
    assert "class TritonPythonModel" in source
    if path.parent.parent.name == "face_pipeline":  # models that pick a device
        assert 'args["model_instance_device_id"]' in source and 'args["model_instance_kind"]' in source
    if path.parent.parent.name in ("backbone", "temporal"):  # the shared network model picks it
        from mintime.serving import triton_models

        shared = Path(triton_models.__file__).read_text()
        assert "NetworkModel" in source
        assert 'args["model_instance_device_id"]' in shared and 'args["model_instance_kind"]' in shared
    assert len(source.splitlines()) < 120


# --- the gpu variant: the pip-installed server (Python backend only) on a GPU machine ---------------------------

GPU_MODELS = ("video_decode", "face_pipeline", "backbone", "temporal")


@pytest.mark.parametrize("name", [m.name for m in contract.MODELS])
def test_gpu_variant_runs_on_the_pip_server(name: str):
    """nvidia-pytriton's tritonserver has only the Python backend: every step is a Python model."""
    cfg = load(name, "configs/gpu.pbtxt")
    assert cfg.backend == "python" and not cfg.platform
    assert (REPOSITORY / name / "1" / "model.py").is_file()
    kind = (
        model_config_pb2.ModelInstanceGroup.KIND_GPU
        if name in GPU_MODELS
        else model_config_pb2.ModelInstanceGroup.KIND_CPU
    )
    assert [g.kind for g in cfg.instance_group] == [kind]


def test_gpu_variant_parameters():
    from mintime.engines import RUNTIMES

    decode = load("video_decode", "configs/gpu.pbtxt")
    assert decode.parameters["decoder"].string_value == "dali_mixed"
    assert load("face_pipeline", "configs/gpu.pbtxt").parameters["device"].string_value == "cuda"
    for name in ("backbone", "temporal"):
        cfg = load(name, "configs/gpu.pbtxt")
        assert cfg.parameters["runtime"].string_value == "torch" and "torch" in RUNTIMES
        prod = load(name, "configs/production.pbtxt")
        assert cfg.max_batch_size == prod.max_batch_size, "the same batches as the TensorRT engines"
        assert cfg.HasField("dynamic_batching")


def test_video_decode_decoders_exist_in_model_py():
    from mintime.serving import triton_models

    source = Path(triton_models.__file__).read_text()
    assert "DecodeModel" in (REPOSITORY / "video_decode" / "1" / "model.py").read_text()
    for variant in VARIANTS:
        decoder = load("video_decode", variant).parameters["decoder"].string_value
        assert decoder in triton_models.DecodeModel.DECODERS, (variant, decoder)
        assert f'self.decoder == "{decoder}"' in source, (variant, decoder)


def test_serve_passes_the_config_name_to_tritonserver(tmp_path):
    from mintime.serving.server import TritonServer

    cmd = TritonServer(REPOSITORY, config_name="gpu", tritonserver=tmp_path / "tritonserver").command()
    assert "--model-config-name=gpu" in cmd
    assert not any(a.startswith("--model-config-name") for a in TritonServer(REPOSITORY).command())


def test_serve_refuses_a_config_name_no_model_has(capsys):
    import argparse

    from mintime.serving import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--model-repository", str(REPOSITORY), "--config-name", "gpus"])
    assert cli.run(args) == 2
    err = capsys.readouterr().err
    assert "no model in" in err and "configs/gpus.pbtxt" in err


def test_code_defaults_are_the_config_defaults():
    """One default per setting: the decoders' and the CLI's defaults are mintime.config's."""
    import inspect

    from mintime.cli import build_parser
    from mintime.config import DEFAULTS
    from mintime.video import DEFAULT_NUM_FRAMES, decode_sampled

    assert DEFAULT_NUM_FRAMES == DEFAULTS.num_frames
    assert inspect.signature(decode_sampled).parameters["num_frames"].default == DEFAULTS.num_frames
    args = build_parser().parse_args(["predict", "x.mp4"])
    for name in ("num_frames", "detect_scale", "max_identities", "embedder", "mask_regime"):
        assert getattr(args, name) == getattr(DEFAULTS, name), name
