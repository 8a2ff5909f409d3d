"""Tracklets first, then appearance: linking, size filter, face selection and merging on synthetic faces."""

from __future__ import annotations

import numpy as np
import pytest

from mintime.faces.tracklets import (
    identities_from_tracklets,
    keep_by_size,
    link_tracklets,
    merge_tracklets,
    select_faces,
    tracklet_sizes,
)


def _box(cx: float, cy: float, side: float) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def _scene(
    people: dict[str, list[tuple[float, float, float] | None]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes, frame ids and person names: per person, per frame (cx, cy, side) or None (not detected)."""
    boxes, fids, who = [], [], []
    num_frames = len(next(iter(people.values())))
    for f in range(num_frames):
        for name, track in people.items():
            if track[f] is not None:
                boxes.append(_box(*track[f]))
                fids.append(10 * f)  # file frame numbers: only their order counts
                who.append(name)
    return np.array(boxes, float), np.array(fids), np.array(who)


def _same_partition(labels: np.ndarray, truth: np.ndarray) -> bool:
    pairs = {(a, b) for a, b in zip(labels.tolist(), truth.tolist(), strict=True)}
    return len(pairs) == len(set(labels.tolist())) == len(set(truth.tolist()))


def test_linking_follows_moving_faces_one_to_one() -> None:
    frames = 8
    boxes, fids, who = _scene(
        {
            "a": [(100 + 12 * f, 200, 80) for f in range(frames)],
            "b": [(400 - 10 * f, 210, 90) for f in range(frames)],
            "c": [
                (700, 100 + 30 * f, 60) for f in range(frames)
            ],  # fast: IoU drops, the centre shift admits it
        }
    )
    tr = link_tracklets(boxes, fids)
    assert len(tr) == 3
    assert _same_partition(tr.track_of, who)
    for t in tr.tracks:  # one face per frame, in frame order
        assert np.array_equal(tr.frame_rank[t], np.arange(frames))


def test_assignment_is_optimal_not_greedy() -> None:
    # frame 0: A at x=100, B at x=160 (overlapping); frame 1: both moved right by 40.
    # Greedy by IoU would give B's successor to A (A's box overlaps B's new box more than its own);
    # the optimal assignment keeps both tracks.
    boxes = np.array([_box(100, 100, 100), _box(160, 100, 100), _box(140, 100, 100), _box(200, 100, 100)])
    tr = link_tracklets(boxes, np.array([0, 0, 1, 1]))
    assert tr.track_of.tolist() == [0, 1, 0, 1]


def test_gap_and_size_jump_start_new_tracklets() -> None:
    boxes, fids, _ = _scene(
        {
            "a": [(100, 100, 80), (102, 100, 80), None, (104, 100, 80)],  # missed once: two tracklets
            "b": [(500, 100, 80), (500, 100, 200), (500, 100, 200), (500, 100, 200)],  # size jump x2.5
        }
    )
    tr = link_tracklets(boxes, fids)
    assert sorted(len(t) for t in tr.tracks) == [1, 1, 2, 3]


def test_size_filter_and_selection() -> None:
    boxes, fids, who = _scene(
        {
            "big": [(300, 300, 200)] * 16,
            "small": [(900, 100, 60)] * 16,  # 0.3 x the big face: dropped before embedding
            "medium": [(600, 300, 100)] * 6 + [None] * 10,
        }
    )
    tr = link_tracklets(boxes, fids)
    sizes = tracklet_sizes(tr, boxes)
    keep = keep_by_size(tr, boxes, min_size_ratio=0.4)
    by_name = {str(who[t[0]]): k for k, t in enumerate(tr.tracks)}
    assert sizes[by_name["big"]] == pytest.approx(200)
    assert keep[by_name["big"]] and keep[by_name["medium"]] and not keep[by_name["small"]]
    assert not keep_by_size(tr, boxes, min_side=150, min_size_ratio=0)[by_name["medium"]]

    chosen = select_faces(tr, boxes, keep=keep, per_track=4)
    assert len(chosen) == 8 and not (who[chosen] == "small").any()
    big = np.sort(chosen[who[chosen] == "big"])
    ranks = tr.frame_rank[big]
    assert ranks.min() < 4 and ranks.max() >= 12  # spread over the tracklet, not its first 4 faces
    # scores pick within each run
    scores = np.zeros(len(boxes))
    scores[tr.tracks[by_name["big"]][3]] = 1.0
    with_scores = select_faces(tr, boxes, keep=keep, per_track=4, scores=scores)
    assert tr.tracks[by_name["big"]][3] in with_scores
    with pytest.raises(ValueError, match="per_track"):
        select_faces(tr, boxes, per_track=0)


def _descriptors(who: np.ndarray, centres: dict[str, np.ndarray], noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([centres[w] + rng.normal(0, noise, centres[w].shape) for w in who])


def test_merge_joins_a_broken_track_and_never_two_faces_of_one_frame() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 0.1, 128), rng.normal(0, 0.1, 128)
    twin = a + rng.normal(0, 0.01, 128)  # looks like a, but seen next to a
    boxes, fids, who = _scene(
        {
            "a": [(100, 100, 80)] * 3 + [None] * 2 + [(300, 100, 80)] * 3,  # two tracklets, far apart
            "twin": [(600, 100, 80)] * 8,
            "b": [(900, 300, 90)] * 8,
        }
    )
    tr = link_tracklets(boxes, fids)
    assert len(tr) == 4
    emb_all = _descriptors(who, {"a": a, "twin": twin, "b": b}, noise=0.02)
    faces = select_faces(tr, boxes, per_track=3)
    labels = merge_tracklets(tr, faces, emb_all[faces], threshold=0.6)
    face_labels = labels[tr.track_of]
    assert _same_partition(face_labels, who)  # a's two tracklets merged; twin kept apart (shares frames)
    assert face_labels[0] == 0  # first seen first

    # unembedded tracklets get -1; bad shapes raise
    partial = merge_tracklets(tr, faces[:1], emb_all[faces[:1]], threshold=0.6)
    assert (partial == -1).sum() == len(tr) - 1
    with pytest.raises(ValueError, match="embeddings"):
        merge_tracklets(tr, faces, emb_all[faces][:, None], threshold=0.6)


def test_average_linkage_resists_one_outlier() -> None:
    # two tracklets of different people; one bad embedding of B lies near A: average linkage keeps them apart
    a, b = np.zeros(16), np.zeros(16)
    a[0], b[0] = 0.4, -0.4  # 0.8 apart
    boxes, fids, who = _scene(
        {"a": [(100, 100, 80)] * 4 + [None] * 4, "b": [None] * 4 + [(500, 100, 80)] * 4}
    )
    tr = link_tracklets(boxes, fids)
    emb = _descriptors(who, {"a": a, "b": b}, noise=0.01)
    emb[4] = a  # an outlier face of b, right on a
    labels = merge_tracklets(tr, np.arange(len(boxes)), emb, threshold=0.5)
    assert labels.tolist() == [0, 1]  # mean distance ~0.6 > 0.5 (the closest pair is 0.0)


def test_identities_from_tracklets_embeds_a_bounded_number() -> None:
    rng = np.random.default_rng(3)
    people = {n: rng.normal(0, 0.1, 128) for n in ("a", "b")}
    boxes, fids, who = _scene(
        {
            "a": [(200 + 3 * f, 200, 150) for f in range(16)],
            "b": [(700, 220, 140)] * 7 + [None] + [(705, 222, 140)] * 8,
            "tiny": [(1000, 50, 30)] * 16,
        }
    )
    emb_all = _descriptors(who, {**people, "tiny": rng.normal(0, 0.1, 128)}, noise=0.02)
    calls = []

    def embed(idx: np.ndarray) -> np.ndarray:
        calls.append(idx)
        return emb_all[idx]

    labels, tr, faces = identities_from_tracklets(boxes, fids, embed, threshold=0.6, per_track=4)
    assert len(calls) == 1 and np.array_equal(calls[0], faces)
    assert len(faces) == 12  # a: 4, b's two tracklets: 4 + 4, tiny: none
    assert (labels[who == "tiny"] == -1).all()
    kept = who != "tiny"
    assert _same_partition(labels[kept], who[kept])
    assert labels.dtype == np.int64 and len(tr) == 4


def test_empty_and_bad_inputs() -> None:
    tr = link_tracklets(np.zeros((0, 4)), np.zeros(0))
    assert len(tr) == 0 and keep_by_size(tr, np.zeros((0, 4))).shape == (0,)
    labels, _, faces = identities_from_tracklets(np.zeros((0, 4)), np.zeros(0), lambda i: None, threshold=0.6)
    assert labels.shape == (0,) and faces.shape == (0,)
    with pytest.raises(ValueError, match="one frame id per box"):
        link_tracklets(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        link_tracklets(np.full((1, 4), np.nan), np.zeros(1))
