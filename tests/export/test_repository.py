"""Version folders, config dims edits and provenance (export.repository), without torch."""

from __future__ import annotations

import json

import pytest

from export import repository as repo
from tests.conftest import REPO

CONFIG = """# a comment that must survive
name: "temporal"
output [
  {
    name: "temporal_logit"
    data_type: TYPE_FP32
    dims: [ 1 ]
  },
  {
    name: "temporal_cls_attention"
    data_type: TYPE_FP32
    dims: [ 2, -1, 785 ]  # heads
  }
]
"""


def test_set_tensor_dims_edits_only_that_tensor():
    out = repo.set_tensor_dims(CONFIG, "temporal_cls_attention", [2, 8, 785])
    assert "dims: [ 2, 8, 785 ]  # heads" in out
    assert "dims: [ 1 ]" in out and out.startswith("# a comment that must survive")
    assert repo.set_tensor_dims(CONFIG, "temporal_cls_attention", [2, 8, 785], keep_dynamic=True) == CONFIG
    with pytest.raises(KeyError, match="nope"):
        repo.set_tensor_dims(CONFIG, "nope", [1])
    with pytest.raises(ValueError, match="rank"):
        repo.set_tensor_dims(CONFIG, "temporal_logit", [1, 2])


def test_update_config_dims_on_committed_configs(tmp_path):
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    path = tmp_path / "production.pbtxt"
    path.write_text((REPO / "model_repository" / "temporal" / "configs" / "production.pbtxt").read_text())
    changed = repo.update_config_dims(
        path, {"backbone_features": [16, 2048, 7, 7], "temporal_cls_attention": [2, 4, 785]}
    )
    assert changed
    cfg = repo.parse_config(path.read_text())
    assert list(cfg.input[0].dims) == [16, 2048, 7, 7]
    assert list(cfg.output[1].dims) == [2, 4, 785]
    assert not repo.update_config_dims(path, {"temporal_cls_attention": [2, 4, 785]})


def test_versions_staging_commit_and_prune(tmp_path):
    model = tmp_path / "backbone"
    assert repo.versions(model) == [] and repo.next_version(model) == 1
    for v in (1, 3, 10):
        (model / str(v)).mkdir(parents=True)
    (model / "configs").mkdir()
    assert (
        repo.versions(model) == [1, 3, 10]
        and repo.latest_version(model) == 10
        and repo.next_version(model) == 11
    )
    staging = repo.staging_dir(model, 11)
    (staging / "model.onnx").write_bytes(b"onnx")
    assert repo.versions(model) == [1, 3, 10], "the staging folder is not a version"
    repo.commit_version(staging, model, 11)
    assert (model / "11" / "model.onnx").read_bytes() == b"onnx" and not staging.exists()
    with pytest.raises(FileExistsError):
        repo.commit_version(repo.staging_dir(model, 11), model, 11)
    for v in (3, 10, 11):  # exported versions hold export.json; version 1 is the committed one
        repo.write_provenance(model / str(v), {"network": "backbone", "version": v})
    assert repo.prune_versions(model, keep=2) == [3]
    assert repo.versions(model) == [1, 10, 11] and (model / "configs").is_dir(), "version 1 is never pruned"
    with pytest.raises(ValueError):
        repo.prune_versions(model, keep=0)


def test_read_max_batch_size_and_provenance(tmp_path):
    assert (
        repo.read_max_batch_size(REPO / "model_repository" / "backbone" / "configs" / "production.pbtxt")
        == 32
    )
    (tmp_path / "model.onnx").write_bytes(b"abc")
    path = repo.write_provenance(tmp_path, {"source": {"checkpoint": "x"}})
    data = json.loads(path.read_text())
    assert data["source"] == {"checkpoint": "x"} and data["date"].endswith("+00:00")
    assert data["files"]["model.onnx"] == {
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "bytes": 3,
    }
