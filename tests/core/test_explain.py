"""Attention explanation (mintime.explain): the fixed computation vs the original aggregate_attentions (§3.8)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mintime.explain import (
    explain_video,
    identity_fake_scores,
    identity_scores,
    original_aggregate_attentions,
    original_frames_per_identity,
    render_result,
    slot_scores,
)
from mintime.slots import FaceRecord, build_slots

F, P, H = 16, 49, 8
T = 1 + F * P


def _row_on_slots(weights: dict[int, float], cls: float = 0.0) -> np.ndarray:
    """A (T,) attention row: ``cls`` on the CLS key, weights[s] spread evenly on slot s's tokens."""
    row = np.zeros(T)
    row[0] = cls
    for s, w in weights.items():
        row[1 + s * P : 1 + (s + 1) * P] = w / P
    return row


def _att(space: np.ndarray, time: np.ndarray | None = None) -> np.ndarray:
    """(2, H, T) attention with the same row in every head."""
    time = space if time is None else time
    return np.stack([np.tile(space, (H, 1)), np.tile(time, (H, 1))])


def _original(att: np.ndarray, slots_per_identity: list[int], scale: float = 50000.0):
    """Run the original on one video's (2, H, T) attention, shaped as the model returned it ((B*H, 1, T))."""
    return original_aggregate_attentions(
        [att[0][:, None, :], att[1][:, None, :]],
        H,
        F,
        original_frames_per_identity(slots_per_identity),
        scale,
    )


def test_shape_and_mask_validation() -> None:
    with pytest.raises(ValueError):
        slot_scores(np.zeros((2, H, T - 1)))
    with pytest.raises(ValueError):
        slot_scores(np.zeros((3, H, T)))
    with pytest.raises(ValueError):
        slot_scores(np.zeros((2, H, T)), mask=np.zeros(F, dtype=bool))
    with pytest.raises(ValueError):
        slot_scores(np.zeros((2, H, T)), normalisation="max")
    batched = slot_scores(np.full((1, 2, H, T), 1.0 / T))  # a leading batch of 1 is accepted
    assert np.allclose(batched["combined"], 1.0 / F)


def test_uniform_attention_gives_uniform_scores() -> None:
    out = slot_scores(np.full((2, H, T), 1.0 / T))
    for name in ("space", "time", "combined"):
        assert out[name].shape == (F,) and out[name].dtype == np.float64
        assert np.allclose(out[name], 1.0 / F)
        assert np.allclose(out[f"{name}_raw"], 1.0 / T)


def test_cls_key_is_dropped_not_credited_to_slot0() -> None:
    # Typical CLS row: a large weight on the CLS key itself, the rest spread evenly over the faces.
    row = np.full(T, 0.5 / (T - 1))
    row[0] = 0.5
    att = _att(row)
    fixed = slot_scores(att)
    assert np.allclose(fixed["combined"], 1.0 / F)
    # The original's chunk 0 is CLS + slot 0 (785 = 50 + 15*49): slot 0 takes (almost) all the mass.
    (space, time, combined), _ = _original(att, [8, 8])
    assert combined[0] > 0.999 and space[0] > 0.999 and time[0] > 0.999
    # Same with the original's softmax normalisation option: the fixed one stays uniform.
    assert np.allclose(slot_scores(att, normalisation="softmax")["combined"], 1.0 / F)


def test_later_chunks_align_with_slots() -> None:
    # The original's misalignment is only chunk 0 (CLS): chunks 1..15 are exactly slots 1..15 (the spec's
    # "every later chunk is misaligned by one token" is not what np.array_split does).
    att = _att(_row_on_slots({1: 1.0}))
    fixed = slot_scores(att)
    assert fixed["combined"][1] == pytest.approx(1.0) and fixed["combined"].sum() == pytest.approx(1.0)
    (_, _, combined), _ = _original(att, [8, 8])
    assert int(np.argmax(combined)) == 1 and combined[1] > 0.999
    # With scale 1, log-ratios of the original's softmax equal raw differences for slots >= 1, not for slot 0.
    rng = np.random.default_rng(0)
    row = rng.random(T)
    row /= row.sum()
    att = _att(row, rng.permutation(row))
    raw = slot_scores(att)["combined_raw"] * 2  # the original sums space and time
    (_, _, combined), _ = _original(att, [8, 8], scale=1.0)
    logp = np.log(combined)
    assert np.allclose(logp[2:] - logp[1], raw[2:] - raw[1], atol=1e-12)
    assert not np.isclose(logp[0] - logp[1], raw[0] - raw[1], atol=1e-6)


def test_max_over_heads_per_video_not_over_batch() -> None:
    a = _att(_row_on_slots({3: 1.0}))
    b = _att(_row_on_slots({9: 1.0}))
    # the original, given a batch of two videos, takes the max over both: each video's map shows the other's slot
    batch = [np.concatenate([a[i], b[i]])[:, None, :] for i in range(2)]
    (_, _, combined), _ = original_aggregate_attentions(batch, H, F, [8, 16])
    assert combined[3] == pytest.approx(0.5) and combined[9] == pytest.approx(0.5)
    fixed = slot_scores(a)["combined"]
    assert fixed[3] == pytest.approx(1.0) and fixed[9] == 0.0
    # heads: the max over heads is taken per key
    att = np.zeros((2, H, T))
    att[:, 0] = _row_on_slots({4: 1.0})
    att[:, 5] = _row_on_slots({6: 0.5, 7: 0.5})
    out = slot_scores(att)
    assert out["combined"][[4, 6, 7]] == pytest.approx([0.5, 0.25, 0.25])


def test_combined_is_average_of_space_and_time() -> None:
    space = _row_on_slots({2: 0.6, 3: 0.4})
    time = _row_on_slots({3: 0.2, 5: 0.8})
    att = _att(space, time)
    out = slot_scores(att)
    assert np.allclose(out["combined_raw"], (out["space_raw"] + out["time_raw"]) / 2)
    assert out["combined"][[2, 3, 5]] == pytest.approx([0.3, 0.3, 0.4])
    assert out["space"][[2, 3]] == pytest.approx([0.6, 0.4])
    assert out["time"][[3, 5]] == pytest.approx([0.2, 0.8])
    # softmax option: the average halves the logits compared with the original's sum
    scale = 2000.0
    soft = slot_scores(att, normalisation="softmax", scale=scale)["combined"]
    s, t = out["space_raw"], out["time_raw"]
    e = np.exp(scale * (s + t) / 2 - np.max(scale * (s + t) / 2))
    assert np.allclose(soft, e / e.sum())
    (_, _, orig_combined), _ = _original(att, [8, 8], scale=scale)  # CLS and slot 0 are 0: chunks == slots
    e = np.exp(scale * (s + t) - np.max(scale * (s + t)))
    assert np.allclose(orig_combined, e / e.sum())
    assert not np.allclose(orig_combined, soft)
    assert orig_combined.max() > soft.max()  # the sum is a sharper (doubled-temperature) map


def test_masked_slots_get_zero() -> None:
    mask = np.array([True] * 12 + [False] * 4)
    uniform = np.full((2, H, T), 1.0 / T)
    for normalisation in ("sum", "softmax"):
        out = slot_scores(uniform, mask=mask, normalisation=normalisation)
        for name in ("space", "time", "combined"):
            assert out[name][12:].tolist() == [0.0] * 4
            assert np.allclose(out[name][:12], 1.0 / 12)
    # all-True training regime: attention paid to dummy (black) slots stays in the map
    att = _att(_row_on_slots({0: 0.5, 14: 0.5}))
    assert slot_scores(att)["combined"][[0, 14]] == pytest.approx([0.5, 0.5])
    assert slot_scores(att, mask=mask)["combined"][[0, 14]] == pytest.approx([1.0, 0.0])
    # no attention on any unmasked face: uniform over the unmasked slots
    out = slot_scores(_att(_row_on_slots({14: 1.0})), mask=mask)
    assert np.allclose(out["combined"][:12], 1.0 / 12)


def test_identity_sums_without_off_by_one() -> None:
    owner = np.array([0] * 8 + [1] * 8)
    # attention on slot 15 (identity 1's last slot): the original never counts slot 15
    att = _att(_row_on_slots({15: 1.0}))
    fixed = identity_scores(slot_scores(att)["combined"], owner, 2)
    assert fixed.tolist() == pytest.approx([0.0, 1.0])
    _, orig = _original(att, [8, 8])
    assert orig == pytest.approx([0.0, 0.0], abs=1e-9)
    # attention on slot 7 (identity 0's last slot): the original credits it to identity 1
    att = _att(_row_on_slots({7: 1.0}))
    assert identity_scores(slot_scores(att)["combined"], owner, 2).tolist() == pytest.approx([1.0, 0.0])
    _, orig = _original(att, [8, 8])
    assert orig == pytest.approx([0.0, 1.0], abs=1e-9)
    # three identities [7, 5, 4]: frames_per_identity [7, 12, 9] -> identity 2's range [11, 8) is empty
    assert original_frames_per_identity([7, 5, 4]) == [7, 12, 9]
    owner3 = np.array([0] * 7 + [1] * 5 + [2] * 4)
    att = _att(_row_on_slots({13: 1.0}))
    assert identity_scores(slot_scores(att)["combined"], owner3, 3).tolist() == pytest.approx([0, 0, 1])
    _, orig = _original(att, [7, 5, 4])
    assert orig[2] == 0.0


def test_identity_scores_validation() -> None:
    scores = np.arange(4, dtype=float)
    assert identity_scores(scores, np.array([1, 1, 0, 2]), 4).tolist() == [2.0, 1.0, 3.0, 0.0]
    with pytest.raises(ValueError):
        identity_scores(scores, np.array([0, 1, 2, 3]), 3)
    with pytest.raises(ValueError):
        identity_scores(scores, np.array([0, 1]), 2)


def test_identity_fake_scores() -> None:
    assert identity_fake_scores(0.9, np.array([0.75, 0.25])).tolist() == pytest.approx([0.9, 0.3])
    assert identity_fake_scores(0.2, np.array([0.75, 0.25])).tolist() == pytest.approx([0.2, 0.2 / 3])
    assert identity_fake_scores(0.9, np.array([0.5, 0.5])).tolist() == pytest.approx([0.9, 0.9])
    assert identity_fake_scores(0.7, np.array([1.0])).tolist() == pytest.approx([0.7])
    assert identity_fake_scores(0.7, np.zeros(2)).tolist() == pytest.approx([0.7, 0.7])
    assert all(math.isnan(v) for v in identity_fake_scores(float("nan"), np.array([0.3, 0.7])))
    rng = np.random.default_rng(1)
    for _ in range(20):
        p, a = float(rng.random()), rng.random(3)
        out = identity_fake_scores(p, a)
        assert out.max() == pytest.approx(p) and (out >= 0).all() and (out <= p + 1e-12).all()
        assert np.array_equal(np.argsort(out), np.argsort(a))
    with pytest.raises(ValueError):
        identity_fake_scores(1.5, np.array([1.0]))
    with pytest.raises(ValueError):
        identity_fake_scores(0.5, np.array([-0.1, 1.0]))


def test_explain_with_a_slot_plan() -> None:
    from mintime.faces.stage import SlotTensors

    a = [FaceRecord(i * 30, 400, 400) for i in range(5)]
    b = [FaceRecord(i * 30, 200, 200) for i in range(5)]
    plan = build_slots([a, b], frame_size=(1280, 720))
    assert plan.slots_per_identity == [5, 11] and plan.num_dummies == 6
    owner = SlotTensors.from_plan(plan, np.zeros((F, 3, 224, 224), np.float32)).slot_identity
    assert owner.tolist() == [0] * 5 + [1] * 5 + [-1] * 6
    # the model looked at identity 1's faces (slots 5..9) three times more than at identity 0's
    weights = {s: 0.1 for s in range(5)} | {s: 0.3 for s in range(5, 10)} | {s: 1.0 for s in range(10, 16)}
    att = _att(_row_on_slots(weights))
    logit = math.log(0.8 / 0.2)
    out = explain_video(logit, att, owner)
    assert out.slot_attention[10:].tolist() == [0.0] * 6  # dummies hidden
    assert out.identity_attention == pytest.approx([0.25, 0.75])
    assert out.identity_scores == pytest.approx([0.8 / 3, 0.8])
    assert out.probability == pytest.approx(0.8) and out.label == "fake"

    # rendering: identity ids in clustering order (here 1 = kept rank 0, 0 = kept rank 1, 2 = not kept)
    face_json = {
        "status": "ok",
        "identities": [
            {"id": 0, "kept": True, "slots": list(range(5, 16))},
            {"id": 1, "kept": True, "slots": list(range(5))},
            {"id": 2, "kept": False, "slots": []},
        ],
    }
    result = render_result(face_json, out, {"name": "m"})
    assert [i["attention"] for i in result["identities"]] == [0.75, 0.25, None]
    assert result["identities"][0]["fake_score"] == pytest.approx(0.8)
    assert result["fake_probability"] == pytest.approx(0.8) and result["model"] == {"name": "m"}


def test_explain_without_a_face() -> None:
    out = explain_video(float("nan"), np.zeros(0), np.full(F, -1))
    assert out.label == "no_face" and math.isnan(out.probability) and out.identity_scores.size == 0
    result = render_result({"status": "no_face", "identities": []}, out)
    assert result["fake_probability"] is None and result["label"] == "no_face" and "model" not in result


def test_the_verdict_uses_the_models_threshold() -> None:
    from mintime.explain import DEFAULT_THRESHOLD, model_threshold

    attention = np.full((2, 1, 1 + 16 * 49), 1.0 / (16 * 49), np.float32)
    owner = np.zeros(16, np.int64)
    logit = float(np.log(0.7 / 0.3))  # p = 0.7
    assert explain_video(logit, attention, owner).label == "fake"
    assert explain_video(logit, attention, owner, threshold=0.8).label == "pristine"
    assert explain_video(logit, attention, owner, threshold=0.69).label == "fake"
    assert model_threshold(None) == model_threshold({"name": "x"}) == DEFAULT_THRESHOLD == 0.5
    assert model_threshold({"threshold": 0.83}) == 0.83


def test_the_verdict_line_names_a_threshold_other_than_one_half() -> None:
    from mintime.explain import human_summary

    result = {"fake_probability": 0.97, "label": "pristine", "identities": [], "model": {"threshold": 0.98}}
    assert (
        human_summary("a.mp4", result)
        == "a.mp4: PRISTINE (P(fake) = 0.9700; this model says fake above 0.9800)"
    )
    result["model"]["threshold"] = 0.5
    assert human_summary("a.mp4", result) == "a.mp4: PRISTINE (P(fake) = 0.9700)"
