"""Parity of MintimeTemporal with the original SizeInvariantTimeSformer (MINTIME-XC config).

The state dict is rebuilt from the key manifest with the fixtures' recipe, saved the way the authors' files were
(``module.`` prefix, plain ``torch.save`` of an OrderedDict), loaded through ``load_original_temporal`` and run on
the four stored scenarios.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mintime.checkpoints import infer_original_config, load_original_temporal
from mintime.models.temporal import MintimeTemporal, TemporalConfig
from tests.helpers.synthetic import rebuild_from_manifest

ATOL = 1e-5


@pytest.fixture(scope="module")
def fixture_data(parity_dir: Path) -> dict:
    data = torch.load(parity_dir / "timesformer_xc.pt", map_location="cpu", weights_only=True)
    data["features"] = data["features"].float()  # stored as fp16
    data["size_ids"] = data["size_ids"].long()
    return data


@pytest.fixture(scope="module")
def original_file(parity_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = rebuild_from_manifest(parity_dir / "timesformer_xc_keys.json")
    wrapped = OrderedDict((f"module.{k}", v) for k, v in state.items())
    path = tmp_path_factory.mktemp("orig") / "MINTIME_XC_Model_checkpoint30"
    torch.save(wrapped, path)
    return path


@pytest.fixture(scope="module")
def model(original_file: Path) -> MintimeTemporal:
    return load_original_temporal(original_file)


Outputs = tuple[torch.Tensor, torch.Tensor | None]


@pytest.fixture(scope="module")
def run(model: MintimeTemporal, fixture_data: dict) -> Callable[[str, str], Outputs]:
    """``run(impl, regime)``: one forward per (impl, regime), cached (an XC forward of 4 videos takes seconds)."""
    cache: dict[tuple[str, str], Outputs] = {}

    def _run(impl: str, regime: str) -> Outputs:
        if (impl, regime) not in cache:
            data = fixture_data
            mask = data["mask"] if regime == "masked" else torch.ones_like(data["mask"])
            model.set_attention_impl(impl)
            with torch.inference_mode():
                out = model(
                    data["features"],
                    mask,
                    data["identities_mask"],
                    data["size_ids"],
                    data["positions"],
                    return_attention=regime == "masked",
                )
            cache[(impl, regime)] = out if isinstance(out, tuple) else (out, None)
        return cache[(impl, regime)]

    return _run


def test_keys_and_shapes_match_manifest(parity_dir: Path) -> None:
    manifest = json.loads((parity_dir / "timesformer_xc_keys.json").read_text())
    with torch.device("meta"):
        ours = MintimeTemporal(TemporalConfig.original_xc()).state_dict()
    assert {k: tuple(s) for k, s, _ in manifest} == {k: tuple(v.shape) for k, v in ours.items()}
    assert len(ours) == 153


def test_infers_xc_config(model: MintimeTemporal) -> None:
    assert model.config == TemporalConfig.original_xc()
    assert not model.training
    assert infer_original_config(model.state_dict()) == TemporalConfig.original_xc()


def test_infers_ef_config_without_size_emb() -> None:
    state = {
        "to_patch_embedding.weight": torch.empty(512, 1280),
        "pos_emb.weight": torch.empty(20481, 512),
        "layers.0.0.norm.weight": torch.empty(512),
        "layers.2.0.norm.weight": torch.empty(512),
    }
    cfg = infer_original_config(state)
    assert (cfg.channels, cfg.pos_table_size, cfg.depth, cfg.enable_size_emb) == (1280, 20481, 3, False)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_logits_with_fixture_masks(run: Callable[[str, str], Outputs], fixture_data: dict, impl: str) -> None:
    logits, _ = run(impl, "masked")
    assert logits.shape == (4, 1)
    torch.testing.assert_close(logits, fixture_data["logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_cls_attention_rows(run: Callable[[str, str], Outputs], fixture_data: dict, impl: str) -> None:
    _, attn = run(impl, "masked")
    assert attn is not None and attn.shape == (4, 2, 8, 785)
    torch.testing.assert_close(attn[:, 0], fixture_data["cls_attention_space_last_layer"], atol=ATOL, rtol=0)
    torch.testing.assert_close(attn[:, 1], fixture_data["cls_attention_time_last_layer"], atol=ATOL, rtol=0)
    # the CLS never sees the tokens of masked (dummy) slots: scenario 0 hides slots 12..15
    assert torch.all(attn[0, :, :, 1 + 12 * 49 :] == 0)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_logits_all_true_mask(run: Callable[[str, str], Outputs], fixture_data: dict, impl: str) -> None:
    # the original training regime: every slot mask entry True (identities_mask unchanged)
    logits, _ = run(impl, "all_true")
    torch.testing.assert_close(logits, fixture_data["logits_all_true_mask"], atol=ATOL, rtol=0)
    # the scenarios with dummy slots must differ from the masked run, the others not
    masked, _ = run(impl, "masked")
    has_dummies = ~fixture_data["mask"].all(dim=1)
    assert torch.all((logits - masked).abs().squeeze(1)[has_dummies] > 1e-3)
    torch.testing.assert_close(logits[~has_dummies], masked[~has_dummies], atol=ATOL, rtol=0)
