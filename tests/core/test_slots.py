"""Slot allocation, sampling, size ids, positions, masks (mintime.slots); original behaviour from §4 of the spec."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from mintime import contract
from mintime.faces.stage import SlotTensors
from mintime.slots import (
    FaceRecord,
    NoFaceError,
    SlotPlan,
    allocate_slots,
    build_slots,
    identities_block_mask,
    sample_indices,
    size_id,
    size_ratio_percent,
    slot_quotas,
    temporal_positions,
    variant_for_index,
)

P = 49
FRAME = (1280, 720)


def _identity(frames: list[int], side: int = 300, tag: str = "") -> list[FaceRecord]:
    return [FaceRecord(frame_index=f, crop_h=side, crop_w=side, key=f"{tag}{f}") for f in frames]


# --- quotas and allocation ----------------------------------------------------------------------------------------
def test_quota_table() -> None:
    assert slot_quotas(1, 16) == [16]
    assert slot_quotas(2, 16) == [8, 8]
    assert slot_quotas(3, 16) == [5, 5, 4]
    assert slot_quotas(4, 16) == [5, 5, 2, 2]
    assert slot_quotas(4, 8) == [2, 2, 1, 1]
    assert slot_quotas(3, 32) == [10, 10, 8]
    assert slot_quotas(5, 16) == [3, 3, 3, 3, 3]  # extension (the original had no n=5 row)
    with pytest.raises(ValueError):
        slot_quotas(17, 16)


# §4.3 worked examples, counts -> slots, with the original (buggy) rule
ORIGINAL_EXAMPLES = [
    ([20, 20], [8, 8]),
    ([6, 6], [6, 10]),
    ([3, 20], [3, 13]),
    ([3, 10], [3, 13]),
    ([20, 3], [13, 3]),
    ([2, 2], [2, 14]),
    ([5], [16]),
    ([20, 20, 20], [7, 5, 4]),
    ([2, 4, 20], [2, 7, 7]),
    ([2, 2, 2], [2, 5, 9]),
]


@pytest.mark.parametrize(("counts", "expected"), ORIGINAL_EXAMPLES)
def test_original_allocation_worked_examples(counts: list[int], expected: list[int]) -> None:
    assert allocate_slots(counts, 16, original=True) == expected


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (
            [2, 4, 20],
            [2, 4, 10],
        ),  # original [2, 7, 7]: 3 dummies in identity 1 while identity 2 had 13 spare faces
        ([2, 2, 2], [2, 2, 12]),  # original [2, 5, 9]: dummies in the middle identity
        ([9, 4, 3], [9, 4, 3]),  # original [8, 4, 4]: a dummy in the last identity although 16 faces exist
        ([10, 3, 2], [10, 3, 3]),  # original [9, 3, 4]: 2 dummies where 1 is unavoidable
        ([6, 6], [6, 10]),  # 12 faces < 16: the 4 unavoidable dummies at the end (same as the original)
        ([3, 10], [3, 13]),
        ([20, 20], [8, 8]),
        ([20, 2, 20], [10, 2, 4]),
        ([5], [16]),
    ],
)
def test_fixed_allocation(counts: list[int], expected: list[int]) -> None:
    assert allocate_slots(counts, 16) == expected


def _all_counts() -> list[list[int]]:
    two = [list(c) for c in itertools.product(range(1, 21), repeat=2)]
    three = [list(c) for c in itertools.product(range(1, 13), repeat=3)]
    four = [list(c) for c in itertools.product(range(1, 8), repeat=4)]
    return two + three + four


def _dummies(slots: list[int], counts: list[int]) -> int:
    return sum(max(0, s - c) for s, c in zip(slots, counts, strict=True))


def test_fixed_allocation_invariants_and_agreement_with_original() -> None:
    middle_dummy_cases = 0
    for counts in _all_counts():
        fixed = allocate_slots(counts, 16)
        orig = allocate_slots(counts, 16, original=True)
        assert sum(fixed) == 16 and sum(orig) == 16
        # never more slots than faces, except the last identity when the video has < 16 faces
        assert all(s <= c for s, c in zip(fixed[:-1], counts[:-1], strict=True)), counts
        if sum(counts) >= 16:
            assert all(s <= c for s, c in zip(fixed, counts, strict=True)), counts
        else:
            assert fixed[:-1] == counts[:-1] and fixed[-1] == 16 - sum(counts[:-1]), counts
        assert all(s >= 1 for s in fixed)
        # fewest possible dummies, all in the last identity
        assert _dummies(fixed, counts) == max(0, 16 - sum(counts)), counts
        # the original is sane when it gives no dummies that could have been avoided
        orig_ok = _dummies(orig, counts) == max(0, 16 - sum(counts)) and all(
            s <= c for s, c in zip(orig[:-1], counts[:-1], strict=True)
        )
        if orig_ok:  # then the fix changes nothing
            assert fixed == orig, counts
        else:
            middle_dummy_cases += 1
    assert middle_dummy_cases > 0  # the bug is real (e.g. [2, 4, 20])


def test_allocation_other_slot_counts() -> None:
    assert allocate_slots([20, 20], 8) == [4, 4]
    assert allocate_slots([1, 40], 32) == [1, 31]
    assert allocate_slots([7], 32) == [32]
    with pytest.raises(ValueError):
        allocate_slots([], 16)
    with pytest.raises(ValueError):
        allocate_slots([-1, 3], 16)


# --- sampling -----------------------------------------------------------------------------------------------------
def test_sampling_spec_examples() -> None:
    assert sample_indices(20, 8, variant="odd").tolist() == [0, 3, 5, 8, 10, 13, 15, 18]
    assert sample_indices(20, 8, variant="even").tolist() == [1, 4, 6, 9, 11, 14, 16, 19]
    assert sample_indices(17, 16, variant="odd").tolist() == list(range(16))
    assert sample_indices(17, 16, variant="even").tolist() == list(range(1, 17))


def test_sampling_rounds_half_to_even() -> None:
    # linspace(0, 5, 3) = [0, 2.5, 5] -> numpy rounds 2.5 to 2 (round-half-up would give 3)
    assert sample_indices(7, 3, variant="odd").tolist() == [0, 2, 5]
    # linspace(1, 4, 3) = [1, 2.5, 4]
    assert sample_indices(5, 3, variant="even").tolist() == [1, 2, 4]


def test_sampling_edge_cases() -> None:
    assert sample_indices(5, 5).tolist() == [0, 1, 2, 3, 4]
    assert sample_indices(3, 10, variant="even").tolist() == [0, 1, 2]
    assert sample_indices(1, 1).tolist() == [0]
    assert sample_indices(1, 16).tolist() == [0]
    assert sample_indices(2, 1, variant="odd").tolist() == [0]
    assert sample_indices(2, 1, variant="even").tolist() == [1]
    assert sample_indices(0, 4).tolist() == []
    assert sample_indices(9, 0).tolist() == []
    assert sample_indices(20, 8).dtype == np.int64
    with pytest.raises(ValueError):
        sample_indices(5, 2, variant="alternate")


def test_variant_for_index() -> None:
    assert [variant_for_index(i) for i in range(4)] == ["even", "odd", "even", "odd"]


# --- size ids -----------------------------------------------------------------------------------------------------
def test_size_ratio_training_formula() -> None:
    # 360x360 crop in a 1280x720 frame: 129600 / 921600 = 14.06 %
    assert size_ratio_percent(360, 360, 1280, 720) == 14
    assert size_ratio_percent(720, 720, 1280, 720) == 56
    assert size_ratio_percent(10, 10, 1280, 720) == 0
    # the original's int(100 * (h*w/2) / (W*H/2)) for many sizes
    for h, w, fw, fh in [
        (37, 41, 640, 360),
        (500, 499, 1920, 1080),
        (113, 113, 854, 480),
        (720, 720, 720, 720),
    ]:
        assert size_ratio_percent(h, w, fw, fh) == int(100 * (h * w / 2) / (fw * fh / 2))


def test_predict_time_ratio_doubling_is_not_reproduced_by_default() -> None:
    # predict.py: int(100 * h*w / (W*H/2)) -> twice the training value, another size bucket
    assert size_ratio_percent(360, 360, 1280, 720, original_predict=True) == 28
    assert size_id(size_ratio_percent(360, 360, 1280, 720)) == 3
    assert size_id(size_ratio_percent(360, 360, 1280, 720, original_predict=True)) == 6
    plan = build_slots([_identity(list(range(0, 400, 25)), side=360)], frame_size=FRAME)
    assert plan.size_ids.tolist() == [3] * 16  # training formula, not the doubled one


def test_size_id_buckets() -> None:
    expected = {0: 1, 1: 1, 5: 1, 6: 2, 10: 2, 11: 3, 15: 3, 16: 4, 50: 10, 51: 11, 95: 19, 96: 20, 100: 20}
    assert {r: size_id(r) for r in expected} == expected
    assert size_id(180) == 20  # clamped (the doubled predict ratio could exceed 100)
    with pytest.raises(ValueError):
        size_id(-1)


# --- positions ----------------------------------------------------------------------------------------------------
def test_temporal_positions_spec_example() -> None:
    # §4.6: two identities with 6 faces at frames 0, 20, ..., 100 + 4 dummies (frame 100) -> ranks 1..6, 1..6, 6 x 4
    frames = list(range(0, 120, 20)) * 2 + [100] * 4
    pos = temporal_positions(frames, P)
    assert pos.shape == (1 + 16 * P,) and pos.dtype == np.int64
    assert pos[0] == 0
    ranks = [1, 2, 3, 4, 5, 6] * 2 + [6] * 4
    for s, r in enumerate(ranks):
        assert pos[1 + s * P : 1 + (s + 1) * P].tolist() == list(range((r - 1) * P + 1, r * P + 1))


def test_temporal_positions_all_distinct_frames_use_all_ids() -> None:
    frames = np.array([50, 10, 30, 20, 40, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160])
    pos = temporal_positions(frames, P)
    assert sorted(pos.tolist()) == list(range(16 * P + 1))
    assert pos[1 : 1 + P].tolist() == list(range(4 * P + 1, 5 * P + 1))  # frame 50 has rank 5


def test_identities_block_mask() -> None:
    m = identities_block_mask([3, 2])
    assert m.dtype == np.bool_
    assert m.tolist() == [
        [True, True, True, False, False],
        [True, True, True, False, False],
        [True, True, True, False, False],
        [False, False, False, True, True],
        [False, False, False, True, True],
    ]


# --- build_slots --------------------------------------------------------------------------------------------------
def test_build_slots_two_identities_with_dummies_and_mask_regimes() -> None:
    a = _identity(list(range(0, 120, 20)), side=400, tag="a")
    b = _identity(list(range(0, 120, 20)), side=200, tag="b")
    plan = build_slots([b, a], frame_size=FRAME)  # a has the larger faces -> first
    assert plan.identity_order == [1, 0]
    assert plan.slots_per_identity == [6, 10]
    assert plan.slot_identity.tolist() == [0] * 6 + [1] * 10
    assert [f.key if f else None for f in plan.faces] == [f"a{i}" for i in range(0, 120, 20)] + [
        f"b{i}" for i in range(0, 120, 20)
    ] + [None] * 4
    assert plan.mask.tolist() == [True] * 12 + [False] * 4
    assert plan.num_dummies == 4
    assert plan.frame_indices.tolist() == list(range(0, 120, 20)) * 2 + [100] * 4
    # size: 400x400 / (1280x720) = 17 % -> 4 ; 200x200 -> 4 % -> 1 ; dummies 0
    assert plan.size_ids.tolist() == [4] * 6 + [1] * 6 + [0] * 4
    assert np.array_equal(plan.identities_mask, identities_block_mask([6, 10]))
    assert np.array_equal(plan.positions, temporal_positions(plan.frame_indices, P))

    training = build_slots([b, a], frame_size=FRAME, mask_regime="all_true")
    assert training.mask.tolist() == [True] * 16  # the original training loader: dummies visible
    assert training.is_dummy.tolist() == plan.is_dummy.tolist()
    for name in ("size_ids", "positions", "identities_mask", "slot_identity", "frame_indices"):
        assert np.array_equal(getattr(training, name), getattr(plan, name))


def test_build_slots_no_middle_dummies_by_default() -> None:
    big = _identity(list(range(0, 50, 25)), side=500, tag="big")  # 2 faces
    mid = _identity([5, 15, 25, 35], side=300, tag="mid")  # 4 faces
    small = _identity(list(range(0, 200, 10)), side=100, tag="small")  # 20 faces
    args = {"frame_size": FRAME, "max_identities": 3}

    orig = build_slots([small, mid, big], original_allocation=True, **args)
    assert orig.identity_order == [2, 1, 0]
    assert orig.slots_per_identity == [2, 7, 7]
    assert orig.mask.tolist() == [True] * 6 + [False] * 3 + [True] * 7  # dummies in the middle identity
    # dummies get the largest frame read so far (identities 0 and 1): 35
    assert orig.frame_indices[6:9].tolist() == [35, 35, 35]

    fixed = build_slots([small, mid, big], **args)
    assert fixed.slots_per_identity == [2, 4, 10]
    assert fixed.num_dummies == 0
    assert fixed.mask.all()
    assert [f.key for f in fixed.faces[:6]] == ["big0", "big25", "mid5", "mid15", "mid25", "mid35"]
    idx = sample_indices(20, 10, variant="odd")
    assert fixed.frame_indices[6:].tolist() == (idx * 10).tolist()


def test_build_slots_sorts_faces_by_frame_and_samples() -> None:
    rng = np.random.default_rng(0)
    frames = rng.permutation(np.arange(0, 600, 30)).tolist()  # 20 faces, shuffled
    a = _identity(frames, side=300, tag="a")
    b = _identity(list(range(1000, 1400, 20)), side=250, tag="b")  # 20 faces
    odd = build_slots([a, b], frame_size=FRAME, sampling="odd")
    even = build_slots([a, b], frame_size=FRAME, sampling="even")
    assert odd.slots_per_identity == [8, 8]
    assert odd.frame_indices[:8].tolist() == [30 * i for i in (0, 3, 5, 8, 10, 13, 15, 18)]
    assert even.frame_indices[:8].tolist() == [30 * i for i in (1, 4, 6, 9, 11, 14, 16, 19)]
    assert odd.frame_indices[8:].tolist() == [1000 + 20 * i for i in (0, 3, 5, 8, 10, 13, 15, 18)]
    # 16 distinct frames -> every position id 0..784 used once
    assert sorted(odd.positions.tolist()) == list(range(16 * P + 1))


def test_build_slots_same_frame_same_rank_across_identities() -> None:
    a = _identity([0, 30, 60], side=300)
    b = _identity([30, 60, 90], side=200)
    plan = build_slots([a, b], frame_size=FRAME, num_slots=8, num_patches=4)
    assert plan.slots_per_identity == [3, 5]
    assert plan.frame_indices.tolist() == [0, 30, 60, 30, 60, 90, 90, 90]
    first_token = plan.positions[1::4]
    assert first_token.tolist() == [1, 5, 9, 5, 9, 13, 13, 13]


def test_build_slots_ordering_and_truncation() -> None:
    ids = [_identity([0, 10], side=s, tag=f"{s}_") for s in (100, 300, 200, 300)]
    plan = build_slots(ids, frame_size=FRAME, max_identities=2)
    assert plan.identity_order == [1, 3]  # stable among equal sizes
    assert build_slots(ids, frame_size=FRAME, order_by_size=False).identity_order == [0, 1]
    assert build_slots(ids, frame_size=FRAME, max_identities=4).identity_order == [1, 3, 2, 0]


def test_build_slots_single_identity_and_empty() -> None:
    plan = build_slots([[], _identity([3, 1, 2, 9, 4], side=300)], frame_size=FRAME)
    assert plan.identity_order == [1]
    assert plan.slots_per_identity == [16]
    assert plan.frame_indices.tolist() == [1, 2, 3, 4, 9] + [9] * 11
    assert plan.mask.tolist() == [True] * 5 + [False] * 11
    assert plan.identities_mask.all()
    with pytest.raises(NoFaceError):
        build_slots([], frame_size=FRAME)
    with pytest.raises(ValueError):  # NoFaceError is a ValueError
        build_slots([[], []], frame_size=FRAME)


def test_as_arrays_matches_contract() -> None:
    plan = build_slots([_identity([0, 10, 20], side=300)], frame_size=FRAME)
    arrays = plan.as_arrays()
    assert set(arrays) == {"mask", "identities_mask", "size_ids", "positions"}
    faces = np.zeros((16, 3, 224, 224), np.float32)
    named = SlotTensors.from_plan(plan, faces).as_inputs()
    assert set(named) == {spec.name for spec in contract.SLOT_TENSORS}
    for spec in contract.SLOT_TENSORS:
        arr = named[spec.name]
        assert arr.dtype == np.dtype(spec.numpy_dtype), spec.name
        assert arr.shape == spec.dims, spec.name
    assert named[contract.SLOT_IDENTITY].tolist() == [0] * 3 + [-1] * 13
    summary = plan.summary()
    assert summary["slots_per_identity"] == [16]
    assert summary["dummy"] == [False] * 3 + [True] * 13
    assert isinstance(plan, SlotPlan)


def test_modules_do_not_import_torch() -> None:
    code = "import sys, mintime.slots, mintime.explain, mintime.config; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
