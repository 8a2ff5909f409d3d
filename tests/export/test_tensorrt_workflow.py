"""`mintime export --trt` end to end with the TensorRT 10 and 11 stand-ins in place of the missing library:
the engine comes from the fp16 graph, its profile from the production config, it is tagged, and `--if-missing`
rebuilds it when the TensorRT version changes. Everything else (ONNX export, parity, versions) is real."""

from __future__ import annotations

import argparse
import json

import pytest

from export import repository as repo
from export import tensorrt as trt_export
from export.cli import add_arguments, run
from export.workflow import ExportOptions, export_to_repository
from tests.export.conftest import tiny_models
from tests.export.trt_stubs import make_trt

SOURCE = {"checkpoint": {"path": "/weights/tiny.pt", "sha256": "0" * 64}}


def _use(monkeypatch: pytest.MonkeyPatch, version: str):
    trt = make_trt(version)
    monkeypatch.setattr(trt_export, "import_tensorrt", lambda: trt)
    return trt


@pytest.mark.parametrize("version", ["10.13.3.9", "11.1.0.106"])
def test_export_require_trt_builds_a_tagged_strongly_typed_engine(repository_copy, monkeypatch, version):
    monkeypatch.delenv("MINTIME_CHECKPOINT", raising=False)
    _use(monkeypatch, version)
    opts = ExportOptions(model_repository=repository_copy, networks=["temporal"], trt="require", fp16=True)
    (result,) = export_to_repository(tiny_models(channels=8), opts, SOURCE)
    vdir = repository_copy / "temporal" / str(result.version)
    info = result.tensorrt
    assert info["built"] and info["version"] == version and info["strongly_typed"]
    fp16_kept = bool(result.fp16 and result.fp16["kept"])
    assert info["precision"] == ("fp16" if fp16_kept else "fp32")
    assert info["source"] == ("model_fp16.onnx" if fp16_kept else "model.onnx")
    built = json.loads((vdir / "model.plan").read_bytes())
    assert built["flags"] == [] and built["precisions"] == (["float16"] if fp16_kept else ["float32"])
    assert info["profile"]["backbone_features"] == [[1, 16, 8, 7, 7], [64, 16, 8, 7, 7], [64, 16, 8, 7, 7]]
    assert info["parity"].startswith("not checked: no CUDA")  # this machine has no GPU
    assert trt_export.read_plan_tag(vdir / "model.plan")["tensorrt"] == version
    record = json.loads((vdir / "export.json").read_text())
    assert "model.plan" in record["files"] and "model.plan.tag.json" in record["files"]


def test_if_missing_rebuilds_for_another_tensorrt(repository_copy, tmp_path, monkeypatch, capsys):
    from tests.e2e.weights import make_tiny_checkpoint

    monkeypatch.delenv("MINTIME_CHECKPOINT", raising=False)
    ck = make_tiny_checkpoint(tmp_path / "tiny.pt")

    def export(*extra: str) -> dict:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        argv = ["--checkpoint", str(ck), "--model-repository", str(repository_copy), "--networks", "temporal",
                "--trt", "--if-missing", "--no-fp16", "--json", *extra]  # fmt: skip
        assert run(parser.parse_args(argv)) == 0
        return json.loads(capsys.readouterr().out)

    _use(monkeypatch, "10.13.3.9")
    assert export()["networks"]["temporal"]["version"] == 2
    assert "already" in export()["note"], "same TensorRT, same (no) GPU: the plan is reused"
    _use(monkeypatch, "11.1.0.106")  # an image upgrade: the 10.x plan cannot load in 11
    assert export()["networks"]["temporal"]["version"] == 3
    assert (
        trt_export.read_plan_tag(repository_copy / "temporal" / "3" / "model.plan")["tensorrt"]
        == "11.1.0.106"
    )
    assert repo.versions(repository_copy / "temporal") == [
        1,
        2,
        3,
    ]  # version 1 (not exported) is never pruned


def test_an_fp16_engine_that_fails_parity_is_rebuilt_in_fp32(repository_copy, tmp_path, monkeypatch, capsys):
    """The container start must not die on an fp16 engine that fails its check: the export rebuilds that
    network's plan from model.onnx (fp32), checks it, commits it and says so. Running an engine needs a GPU, so
    the parity run is the stand-in here: it fails every fp16 plan (read from the TensorRT stand-in's plan)."""
    import export.workflow as wf
    from export.onnx import ParityError
    from tests.e2e.weights import make_tiny_checkpoint

    monkeypatch.delenv("MINTIME_CHECKPOINT", raising=False)
    _use(monkeypatch, "11.1.0.106")
    checked: list[str] = []

    def parity(which, plan, module, max_batch, precision):
        built = json.loads(plan.read_bytes())
        checked.append(f"{which}:{precision}:{built['precisions']}")
        if "float16" in built["precisions"]:
            raise ParityError(
                f"{which}: the fp16 TensorRT engine differs from PyTorch fp32 on temporal_logit"
            )
        return {"temporal_logit": 1e-6}

    monkeypatch.setattr(wf, "_engine_parity", parity)
    monkeypatch.setattr(wf, "FP16_ATOL", 1.0)  # the fp16 graph holds, so an fp16 engine is built first
    ck = make_tiny_checkpoint(tmp_path / "tiny.pt")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--checkpoint", str(ck), "--model-repository", str(repository_copy), "--networks", "temporal",
            "--trt", "--if-missing"]  # fmt: skip
    assert run(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert checked == ["temporal:fp16:['float16']", "temporal:fp32:['float32']"]
    assert (
        "TensorRT fp32 engine built (the fp16 engine failed its parity check, rebuilt from model.onnx" in out
    )
    vdir = repository_copy / "temporal" / "2"
    assert json.loads((vdir / "model.plan").read_bytes())["precisions"] == ["float32"]
    record = json.loads((vdir / "export.json").read_text())
    assert record["tensorrt"]["precision"] == "fp32" and record["tensorrt"]["source"] == "model.onnx"
    assert "differs from PyTorch fp32" in record["tensorrt"]["fp16_rejected"]
    assert (vdir / "export.complete").is_file()


def test_an_fp32_engine_that_fails_parity_still_fails_the_export(repository_copy, monkeypatch):
    import export.workflow as wf
    from export.onnx import ParityError

    monkeypatch.delenv("MINTIME_CHECKPOINT", raising=False)
    _use(monkeypatch, "11.1.0.106")

    def parity(which, plan, module, max_batch, precision):
        raise ParityError(f"{which}: the {precision} TensorRT engine differs")

    monkeypatch.setattr(wf, "_engine_parity", parity)
    opts = ExportOptions(model_repository=repository_copy, networks=["temporal"], trt="require", fp16=False)
    with pytest.raises(ParityError, match="the fp32 TensorRT engine differs"):
        export_to_repository(tiny_models(channels=8), opts, SOURCE)
    assert repo.versions(repository_copy / "temporal") == [1], "nothing committed"
