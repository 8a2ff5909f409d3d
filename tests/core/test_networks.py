"""The one door to weights (mintime.networks): every checkpoint kind → networks that run in the engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mintime import checkpoints, contract
from mintime.engines import TorchEngines
from mintime.models import create_temporal
from mintime.models.backbones.tiny import TinyBackbone
from mintime.models.baseline import FrameBaseline
from mintime.networks import (
    DEFAULT_CHECKPOINT,
    DEMO_CAVEAT,
    DEMO_CHECKPOINT,
    WeightsNotFoundError,
    file_digest,
    load_networks,
)
from tests.helpers.synthetic import two_identity_inputs


def _slot_inputs(channels: int = 64) -> dict[str, np.ndarray]:
    features, mask, identities_mask, size_ids, positions = two_identity_inputs(1, channels)
    rng = np.random.default_rng(0)
    return {
        contract.FACES: rng.uniform(0, 255, (1, 16, 3, 224, 224)).astype(np.float32),
        contract.MASK: mask.numpy(),
        contract.IDENTITIES_MASK: identities_mask.numpy(),
        contract.SIZE_IDS: size_ids.numpy(),
        contract.POSITIONS: positions.numpy(),
    }


def test_tiny_mintime_checkpoint_loads_and_runs(tmp_path: Path) -> None:
    """A checkpoint of the ``tiny`` training config (``tiny_test`` backbone) is usable by ``mintime predict``."""
    torch.manual_seed(0)
    backbone, temporal = TinyBackbone(), create_temporal("tiny", channels=64)
    path = checkpoints.save_checkpoint(
        tmp_path / "tiny.pt",
        temporal_config=temporal.config.to_dict(),
        temporal_state=temporal,
        backbone="tiny_test",
        backbone_state=backbone,
        metadata={"name": "tiny-test", "trained_on": "nothing (test)", "threshold": 0.7, "caveat": "a test"},
    )
    nets = load_networks(checkpoint=path)
    assert nets.kind == "mintime" and nets.channels == 64 and not nets.backbone_stock
    assert nets.model == {
        "name": "tiny-test",
        "kind": "mintime",
        "backbone": "tiny_test",
        "weights": [{"file": str(path.resolve()), "sha256": file_digest(path)}],
        "trained_on": "nothing (test)",
        "card": None,
        "caveat": "a test",
        "threshold": 0.7,
    }
    out = TorchEngines(nets.backbone, nets.head)(_slot_inputs())
    with torch.inference_mode():
        feats = backbone.eval()(torch.from_numpy(_slot_inputs()[contract.FACES][0])).reshape(1, 16, 64, 7, 7)
        ref = temporal.eval()(
            feats, *(torch.from_numpy(v) for k, v in _slot_inputs().items() if k != contract.FACES)
        )
    np.testing.assert_allclose(out[contract.TEMPORAL_LOGIT], ref.numpy(), rtol=1e-5, atol=1e-6)


def test_baseline_checkpoint_loads_and_runs_as_the_temporal_network(tmp_path: Path) -> None:
    torch.manual_seed(1)
    backbone, head = TinyBackbone(), FrameBaseline(64, hidden=8)
    path = checkpoints.save_baseline_checkpoint(
        tmp_path / "baseline.pt",
        head_config={"in_channels": 64, "hidden": 8},
        head_state=head,
        backbone="tiny_test",
        backbone_state=backbone,
        metadata={"name": "baseline-test"},
    )
    nets = load_networks(checkpoint=path)
    assert nets.kind == "baseline" and isinstance(nets.head, FrameBaseline)
    inputs = _slot_inputs()
    out = TorchEngines(nets.backbone, nets.head)(inputs)
    with torch.inference_mode():
        feats = backbone.eval()(torch.from_numpy(inputs[contract.FACES][0])).reshape(1, 16, 64, 7, 7)
        ref = head.eval()(feats, torch.from_numpy(inputs[contract.MASK]))
    np.testing.assert_allclose(out[contract.TEMPORAL_LOGIT], ref.numpy(), rtol=1e-5, atol=1e-6)
    # no attention: zeros of the contract's shape with one head
    assert out[contract.TEMPORAL_CLS_ATTENTION].shape == (1, 2, 1, contract.NUM_TOKENS)
    assert not out[contract.TEMPORAL_CLS_ATTENTION].any()


def test_the_self_blended_checkpoint_is_the_default() -> None:
    nets = load_networks()
    assert nets.model["weights"][0]["file"] == str(DEFAULT_CHECKPOINT)
    assert nets.model["name"] == "mintime-sbi-lite0-v1" and not nets.backbone_stock  # its fine-tuned backbone
    assert "self-blended" in nets.model["trained_on"] and "AUC" in nets.model["caveat"]
    assert nets.model["threshold"] >= 0.5 and nets.metadata["validation"]["videos"] == 26
    demo = load_networks(checkpoint=DEMO_CHECKPOINT)
    assert demo.backbone_stock and demo.model["caveat"] == DEMO_CAVEAT and demo.model["threshold"] == 0.5


def test_bad_inputs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="weights file not found"):
        load_networks(checkpoint=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="--variant xc|ef"):
        load_networks(model_weights=tmp_path / "m", extractor_weights=tmp_path / "e")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(checkpoints.CheckpointError, match="garbage.pt"):
        load_networks(checkpoint=garbage)
    state = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(1)}, state)
    with pytest.raises(checkpoints.CheckpointError, match="bare state dict"):
        load_networks(checkpoint=state)
