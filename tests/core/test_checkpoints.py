"""Checkpoint I/O: strict loading with clear errors, safe reading, the project checkpoint format."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from mintime.checkpoints import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    load_original_temporal,
    load_state_dict_strict,
    read_state_dict,
    save_checkpoint,
)
from mintime.models.temporal import MintimeTemporal, TemporalConfig


@pytest.fixture
def tiny() -> MintimeTemporal:
    torch.manual_seed(0)
    return MintimeTemporal(TemporalConfig.tiny()).eval()


def _state(model: MintimeTemporal) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _perturbed(model: MintimeTemporal) -> dict[str, torch.Tensor]:
    return {k: v + 1.0 for k, v in _state(model).items()}


def _assert_untouched(model: MintimeTemporal, before: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} was modified by a failed load"


def test_missing_key_is_named(tiny: MintimeTemporal) -> None:
    before = _state(tiny)
    state = _perturbed(tiny)
    del state["layers.1.0.fn.to_qkv.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing keys: layers\.1\.0\.fn\.to_qkv\.weight") as err:
        load_state_dict_strict(tiny, state, what="unit")
    assert "unit" in str(err.value) and "unexpected" not in str(err.value)
    _assert_untouched(tiny, before)


def test_unexpected_key_is_named(tiny: MintimeTemporal) -> None:
    before = _state(tiny)
    state = _perturbed(tiny)
    state["layers.0.0.fn.to_qkv.bias"] = torch.zeros(192)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: layers\.0\.0\.fn\.to_qkv\.bias"):
        load_state_dict_strict(tiny, state, what="unit")
    _assert_untouched(tiny, before)


def test_shape_mismatch_is_named(tiny: MintimeTemporal) -> None:
    before = _state(tiny)
    state = _perturbed(tiny)
    state["to_patch_embedding.weight"] = torch.zeros(64, 2048)
    with pytest.raises(
        CheckpointError, match=r"to_patch_embedding\.weight \(file \(64, 2048\) vs model \(64, 64\)\)"
    ):
        load_state_dict_strict(tiny, state, what="unit")
    _assert_untouched(tiny, before)


def test_error_lists_are_capped_with_counts(tiny: MintimeTemporal) -> None:
    state = {f"junk.{i}": torch.zeros(1) for i in range(25)}
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(tiny, state, what="unit")
    msg = str(err.value)
    n_expected = len(tiny.state_dict())
    assert f"{n_expected} missing keys" in msg and "25 unexpected keys" in msg
    assert "(+15 more)" in msg and "junk.9" in msg and "junk.10" not in msg


def test_strict_load_succeeds(tiny: MintimeTemporal) -> None:
    state = _perturbed(tiny)
    load_state_dict_strict(tiny, state, what="unit")
    for k, v in tiny.state_dict().items():
        assert torch.equal(v, state[k])


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_read_state_dict_unwraps_and_strips(tmp_path: Path, wrapper: str | None) -> None:
    inner = OrderedDict([("module.a.weight", torch.ones(2)), ("module.b", torch.zeros(3))])
    obj = inner if wrapper is None else {wrapper: inner, "epoch": 30}
    torch.save(obj, tmp_path / "f.pth")
    out = read_state_dict(tmp_path / "f.pth")
    assert list(out) == ["a.weight", "b"]
    assert torch.equal(out["a.weight"], torch.ones(2))


def test_read_state_dict_strips_through_efficient_net(tmp_path: Path) -> None:
    torch.save({"module.efficient_net._conv_stem.weight": torch.ones(1), "x": torch.ones(1)}, tmp_path / "f")
    assert list(read_state_dict(tmp_path / "f", strip_through="efficient_net.")) == ["_conv_stem.weight", "x"]
    assert list(read_state_dict(tmp_path / "f")) == ["efficient_net._conv_stem.weight", "x"]


def test_read_state_dict_rejects_collisions_and_non_tensors(tmp_path: Path) -> None:
    torch.save({"module.a": torch.ones(1), "a": torch.ones(1)}, tmp_path / "c")
    with pytest.raises(CheckpointError, match="collides"):
        read_state_dict(tmp_path / "c")
    torch.save({"a": torch.ones(1), "epoch": 3}, tmp_path / "n")
    with pytest.raises(CheckpointError, match="non-tensor"):
        read_state_dict(tmp_path / "n")
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "absent")


class _Payload:
    """Unpickling this would create a marker file: proves the loader never unpickles arbitrary objects."""

    marker: str = ""

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.marker,))


def test_arbitrary_object_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": 1, "temporal_state": {"a": torch.ones(1)}, "x": payload}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="refused"):
        load_original_temporal(path)
    assert not marker.exists()


def test_garbage_and_foreign_files(tmp_path: Path, tiny: MintimeTemporal) -> None:
    (tmp_path / "g").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "g")
    torch.save(tiny.state_dict(), tmp_path / "bare")
    with pytest.raises(CheckpointError, match="bare state dict"):
        load_checkpoint(tmp_path / "bare")
    torch.save({"format": FORMAT, "version": 99}, tmp_path / "future")
    with pytest.raises(CheckpointError, match="unsupported project checkpoint version 99"):
        load_checkpoint(tmp_path / "future")
    torch.save({"format": FORMAT, "version": 1, "temporal_config": "{}"}, tmp_path / "partial")
    with pytest.raises(CheckpointError, match="malformed"):
        load_checkpoint(tmp_path / "partial")


def test_project_checkpoint_round_trip(tmp_path: Path, tiny: MintimeTemporal) -> None:
    backbone_state = {"conv.weight": torch.randn(4, 3, 3, 3), "bn.num_batches_tracked": torch.tensor(7)}
    meta = {"epoch": 3, "auc": 0.91, "notes": ["a", "b"]}
    path = tmp_path / "sub" / "ckpt.pt"
    save_checkpoint(
        path,
        temporal_config=tiny.config.to_dict(),
        temporal_state=tiny.state_dict(),
        backbone="lite0",
        backbone_state=backbone_state,
        metadata=meta,
    )
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
    ck = load_checkpoint(path)
    assert ck.backbone == "lite0" and ck.metadata == meta
    assert TemporalConfig.from_dict(ck.temporal_config) == tiny.config
    assert ck.backbone_state is not None and ck.backbone_state.keys() == backbone_state.keys()
    assert all(torch.equal(ck.backbone_state[k], v) for k, v in backbone_state.items())
    assert all(torch.equal(ck.temporal_state[k], v) for k, v in tiny.state_dict().items())

    rebuilt = ck.build_temporal()
    f, p = 16, 49
    gen = torch.Generator().manual_seed(1)
    inputs = (
        torch.randn(2, f, 64, 7, 7, generator=gen),
        torch.ones(2, f, dtype=torch.bool),
        torch.ones(2, f, f, dtype=torch.bool),
        torch.randint(1, 21, (2, f), generator=gen),
        torch.arange(1 + f * p).repeat(2, 1),
    )
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(*inputs), tiny(*inputs), rtol=0, atol=0)

    # overwrite in place (atomic replace), no backbone
    save_checkpoint(
        path,
        temporal_config=tiny.config.to_dict(),
        temporal_state=tiny,
        backbone="xception",
        backbone_state=None,
        metadata={},
    )
    ck2 = load_checkpoint(path)
    assert ck2.backbone == "xception" and ck2.backbone_state is None and ck2.metadata == {}
    with pytest.raises(CheckpointError, match="project checkpoint"):
        read_state_dict(path)


def test_save_rejects_non_json_metadata(tmp_path: Path, tiny: MintimeTemporal) -> None:
    with pytest.raises(TypeError):
        save_checkpoint(
            tmp_path / "x.pt",
            temporal_config=tiny.config.to_dict(),
            temporal_state=tiny.state_dict(),
            backbone="lite0",
            backbone_state=None,
            metadata={"bad": object()},
        )
    assert list(tmp_path.iterdir()) == []
