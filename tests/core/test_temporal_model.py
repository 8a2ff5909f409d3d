"""MintimeTemporal behaviour on the tiny preset: masks, implementations, dtypes, config, ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mintime import contract
from mintime.models.temporal import MintimeTemporal, TemporalConfig
from tests.helpers.synthetic import two_identity_inputs

F, P = 16, 49


@pytest.fixture
def tiny() -> MintimeTemporal:
    torch.manual_seed(0)
    return MintimeTemporal(TemporalConfig.tiny()).eval()


def test_shapes_and_attention_rows(tiny: MintimeTemporal) -> None:
    inputs = two_identity_inputs(3)
    with torch.inference_mode():
        logits, attn = tiny(*inputs, return_attention=True)
        plain = tiny(*inputs)
    assert logits.shape == (3, 1) and attn.shape == (3, 2, 2, 1 + F * P)
    torch.testing.assert_close(plain, logits, rtol=0, atol=0)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 2, 2))
    assert torch.all(attn[..., 1 + 12 * P :] == 0) and torch.all(attn[..., : 1 + 12 * P] > 0)


def test_sdpa_matches_eager(tiny: MintimeTemporal) -> None:
    inputs = two_identity_inputs(2)
    with torch.inference_mode():
        a = tiny.set_attention_impl("sdpa")(*inputs, return_attention=True)
        b = tiny.set_attention_impl("eager")(*inputs, return_attention=True)
    assert tiny.attn_impl == "eager"
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown attention"):
        tiny.set_attention_impl("flash")  # type: ignore[arg-type]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_masked_slots_do_not_influence_the_logit(tiny: MintimeTemporal, impl: str) -> None:
    features, mask, identities_mask, size_ids, positions = two_identity_inputs(2)
    tiny.set_attention_impl(impl)
    features2, size_ids2, positions2 = features.clone(), size_ids.clone(), positions.clone()
    features2[:, 12:] = 100 * torch.randn_like(features2[:, 12:])
    size_ids2[:, 12:] = 17
    positions2[:, 1 + 12 * P :] = 3
    with torch.inference_mode():
        ref = tiny(features, mask, identities_mask, size_ids, positions)
        same = tiny(features2, mask, identities_mask, size_ids2, positions2)
        unmasked = tiny(features2, torch.ones_like(mask), identities_mask, size_ids2, positions2)
    torch.testing.assert_close(same, ref, rtol=0, atol=1e-6)
    assert (unmasked - ref).abs().min() > 1e-3  # with the dummies visible they matter


def test_temporal_attention_is_restricted_to_the_identity() -> None:
    # depth 1 and no CLS influence on the tokens: check the mask directly in the temporal module's output
    torch.manual_seed(0)
    model = MintimeTemporal(TemporalConfig.tiny(depth=1)).eval()
    attn_module = model.layers[0][0].fn
    x = torch.randn(1, 1 + F * P, 64)
    _, mask, identities_mask, _, _ = two_identity_inputs(1)
    cls_mask = torch.cat([torch.ones(1, 1, dtype=torch.bool), mask.repeat_interleave(P, dim=1)], dim=1)
    time_mask = torch.cat([torch.ones(1, F, 1, dtype=torch.bool), mask[:, None, :] & identities_mask], dim=2)
    with torch.inference_mode():
        out, _ = attn_module(x, cls_mask=cls_mask, time_mask=time_mask)
        x2 = x.clone()
        x2[:, 1 + 6 * P : 1 + 12 * P] += 5.0  # change identity 1's real slots
        out2, _ = attn_module(x2, cls_mask=cls_mask, time_mask=time_mask)
    delta = (out2 - out).abs().amax(dim=-1)[0]
    assert torch.all(delta[1 : 1 + 6 * P] < 1e-5)  # identity 0 tokens do not see identity 1
    assert torch.all(delta[1 + 6 * P :] > 1e-4)  # identity 1 (incl. its dummies) does
    assert delta[0] > 1e-4  # and the CLS sees everything unmasked


def test_pos_emb_disabled_ignores_positions_and_no_size_table() -> None:
    torch.manual_seed(0)
    model = MintimeTemporal(TemporalConfig.tiny(enable_pos_emb=False, enable_size_emb=False)).eval()
    assert not hasattr(model, "size_emb")
    assert not any(k.startswith("size_emb") for k in model.state_dict())
    features, mask, identities_mask, size_ids, positions = two_identity_inputs(2)
    with torch.inference_mode():
        a = model(features, mask, identities_mask, size_ids, positions)
        b = model(features, mask, identities_mask, torch.zeros_like(size_ids), torch.zeros_like(positions))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_default_tables_and_presets() -> None:
    assert TemporalConfig().pos_rows == 785 and TemporalConfig().size_rows == 21
    xc, ef = TemporalConfig.original_xc(), TemporalConfig.original_ef()
    assert (xc.channels, xc.pos_rows, xc.size_rows) == (2048, 32769, 32769)
    assert (ef.channels, ef.pos_rows, ef.size_rows) == (1280, 20481, 20481)
    assert TemporalConfig.tiny(depth=1).depth == 1
    cfg = TemporalConfig.tiny(attn_dropout=0.1)
    assert TemporalConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown TemporalConfig fields"):
        TemporalConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="pos_table_size"):
        MintimeTemporal(TemporalConfig.tiny(pos_table_size=100))


def test_init_statistics() -> None:
    torch.manual_seed(0)
    model = MintimeTemporal(TemporalConfig.tiny())
    assert 0.015 < model.pos_emb.weight.std().item() < 0.025
    assert 0.015 < model.to_patch_embedding.weight.std().item() < 0.025
    assert torch.all(model.to_patch_embedding.bias == 0) and torch.all(model.to_out[1].bias == 0)
    assert torch.all(model.to_out[0].weight == 1)


def test_input_validation(tiny: MintimeTemporal) -> None:
    features, mask, identities_mask, size_ids, positions = two_identity_inputs(1)
    with pytest.raises(ValueError, match="features has shape"):
        tiny(features[:, :8], mask, identities_mask, size_ids, positions)
    with pytest.raises(ValueError, match="bool"):
        tiny(features, mask.long(), identities_mask, size_ids, positions)
    with pytest.raises(ValueError, match="positions has shape"):
        tiny(features, mask, identities_mask, size_ids, positions[:, :10])


def test_training_step_backward(tiny: MintimeTemporal) -> None:
    tiny.train()
    logits = tiny(*two_identity_inputs(2))
    nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).backward()
    assert tiny.cls_token.grad is not None and tiny.cls_token.grad.abs().sum() > 0
    assert tiny.layers[0][0].fn.to_qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_bfloat16_runs_close_to_float32(tiny: MintimeTemporal, impl: str) -> None:
    inputs = two_identity_inputs(2)
    tiny.set_attention_impl(impl)
    with torch.inference_mode():
        ref, ref_attn = tiny(*inputs, return_attention=True)
        low = tiny.to(torch.bfloat16)
        out, attn = low(inputs[0].bfloat16(), *inputs[1:], return_attention=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=0.05)
    assert torch.all(attn[..., 1 + 12 * P :] == 0)


class _Export(nn.Module):
    def __init__(self, model: MintimeTemporal) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(*inputs, return_attention=True)


# the TorchScript exporter (dynamo=False) warns that it is deprecated
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_onnx_export_dynamic_batch(tiny: MintimeTemporal, tmp_path: Path, impl: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    tiny.set_attention_impl(impl)
    spec = contract.TEMPORAL
    in_names = [t.name for t in spec.inputs]
    out_names = [t.name for t in spec.outputs]
    path = tmp_path / "temporal.onnx"
    torch.onnx.export(
        _Export(tiny),
        two_identity_inputs(1),
        str(path),
        input_names=in_names,
        output_names=out_names,
        dynamic_axes={name: {0: "batch"} for name in in_names + out_names},
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        inputs = two_identity_inputs(batch, seed=batch)
        inputs[1][-1, 10:] = False  # a different mask pattern in the last video
        with torch.inference_mode():
            ref_logits, ref_attn = tiny(*inputs, return_attention=True)
        logits, attn = session.run(out_names, {n: t.numpy() for n, t in zip(in_names, inputs, strict=True)})
        assert logits.shape == (batch, 1) and attn.shape == (batch, 2, 2, 1 + F * P)
        np.testing.assert_allclose(logits, ref_logits.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(attn, ref_attn.numpy(), rtol=0, atol=1e-6)
