"""``mintime export`` arguments and a real run (temporal only, for speed) from a project checkpoint."""

from __future__ import annotations

import argparse
import json

import pytest

from export import repository as repo
from export.cli import add_arguments, run
from tests.e2e.weights import make_tiny_checkpoint


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_and_trt_switches():
    args = parse()
    assert args.trt == "auto" and args.keep == 2 and args.fp16 and args.check_batches == [1, 3]
    assert args.networks == ["backbone", "temporal"]
    assert parse("--trt").trt == "require" and parse("--no-trt").trt == "off"
    with pytest.raises(SystemExit):
        parse("--trt", "--no-trt")


def test_export_temporal_from_a_checkpoint(tmp_path, repository_copy, capsys):
    ck = make_tiny_checkpoint(tmp_path / "tiny.pt")
    onnx_dir = tmp_path / "onnx"
    args = parse(
        "--checkpoint",
        str(ck),
        "--model-repository",
        str(repository_copy),
        "--networks",
        "temporal",
        "--no-fp16",
        "--json",
        "--onnx-dir",
        str(onnx_dir),
    )
    assert run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    info = summary["networks"]["temporal"]
    assert info["version"] == 2 and info["dims"] == {"temporal_cls_attention": [2, 2, 785]}
    assert info["tensorrt"] is False and "TensorRT" in info["tensorrt_note"]
    record = json.loads((repository_copy / "temporal" / "2" / "export.json").read_text())
    assert record["source"]["checkpoint"]["sha256"] == repo.sha256_file(ck)
    assert record["source"]["loader"]["backbone"] == "efficientnet_lite0"
    assert (onnx_dir / "temporal.onnx").read_bytes() == (
        repository_copy / "temporal" / "2" / "model.onnx"
    ).read_bytes()

    # --if-missing: the served version has model.onnx now, nothing to do
    assert (
        run(
            parse(
                "--checkpoint",
                str(ck),
                "--model-repository",
                str(repository_copy),
                "--networks",
                "temporal",
                "--if-missing",
                "--json",
            )
        )
        == 0
    )
    assert "already" in json.loads(capsys.readouterr().out)["note"]
    assert repo.versions(repository_copy / "temporal") == [1, 2]


def test_trt_without_tensorrt_is_one_line(tmp_path, capsys):
    from export.tensorrt import tensorrt_available
    from mintime.cli import main

    if tensorrt_available()[0]:
        pytest.skip("TensorRT is installed here")
    code = main(["export", "--trt", "--model-repository", str(tmp_path / "repo")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: TensorRT is not available") and "Traceback" not in err[0]
    assert not (tmp_path / "repo").exists()  # nothing written


def test_a_tiny_training_checkpoint_exports_with_its_8_slots(tmp_path, repository_copy, capsys, caplog):
    """`mintime train --config tiny` writes 8-slot checkpoints: the graphs, every config's slot dims and the face
    stage's num_slots follow the checkpoint; torch's constant-folding warnings are silenced and the missing
    TensorRT is said once."""
    import logging
    import warnings

    from export.tensorrt import tensorrt_available
    from mintime.cli import main
    from tests.e2e.weights import make_tiny_training_checkpoint

    ck = make_tiny_training_checkpoint(tmp_path / "best.pt")
    args = ["export", "--checkpoint", str(ck), "--model-repository", str(repository_copy), "--no-fp16"]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        assert main([*args, "--onnx-dir", str(tmp_path / "onnx")]) == 0
    assert [str(w.message) for w in caught if "Constant folding" in str(w.message)] == []
    out = capsys.readouterr().out
    if not tensorrt_available()[0]:
        said = out + "\n".join(r.getMessage() for r in caplog.records)
        assert said.count("TensorRT is not available") == 1, said
        assert out.count("no TensorRT engine") == 2
    for model, tensor, dims in [
        ("backbone", "face_slots_faces", [8, 3, 224, 224]),
        ("backbone", "backbone_features", [8, None, 7, 7]),  # channels: -1 where the config is dynamic
        ("temporal", "face_slots_identities_mask", [8, 8]),
        ("temporal", "face_slots_positions", [393]),
        ("face_pipeline", "face_slots_faces", [8, 3, 224, 224]),
        ("face_pipeline", "face_slots_identity", [8]),
        ("explain", "face_slots_identity", [8]),
    ]:
        for path in repo.config_paths(repository_copy / model):
            config = repo.parse_config(path.read_text())
            tensors = {t.name: list(t.dims) for t in [*config.input, *config.output]}
            got = [None if want is None else d for d, want in zip(tensors[tensor], dims, strict=True)]
            assert got == dims, (path, tensor, tensors[tensor])
    for path in repo.config_paths(repository_copy / "face_pipeline"):
        config = repo.parse_config(path.read_text())
        assert config.parameters["num_slots"].string_value == "8", path
