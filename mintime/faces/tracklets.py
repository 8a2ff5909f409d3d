"""Tracklets first, appearance second: identities with few embeddings.

The detections of a clip's sampled frames are first linked into **tracklets** by position alone, then only a
few faces per tracklet are embedded, and tracklets are merged into identities by appearance. Compared with
embedding every detection (:mod:`mintime.faces.identities`), the embedder runs on a bounded number of faces per
person, and faces too small to matter are dropped before any embedding.

Steps (pure numpy/scipy functions, no I/O, no models):

1. :func:`link_tracklets`: between each pair of consecutive sampled frames, detections are matched one-to-one
   by an optimal assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``) on a cost made of
   ``1 - IoU`` and the centre distance relative to the face size; a pair is admissible only when the IoU is at
   least ``min_iou`` or the centres are closer than ``max_centre_shift`` face sizes, and the sizes differ by
   less than ``max_size_change``. Unmatched detections start new tracklets; a tracklet whose face is missing in
   a frame ends (a later appearance is a new tracklet, merged back by appearance in step 4).
2. :func:`tracklet_sizes` / :func:`keep_by_size`: tracklets whose mean face size (longer box side) is below
   ``min_side`` pixels, or below ``min_size_ratio`` x the largest tracklet's, are dropped before embedding.
   The default ratio, 0.25, is deliberately looser than the identity stage's 0.4 (relative to the largest
   *identity*, whose mean size can be well below the largest tracklet's when a person walks away from the
   camera): a tracklet a quarter the size of the largest face only survives the identity stage when merged
   with faces of the same person four times larger. Measured on the street clip (16 sampled frames): a ratio
   of 0.4 here dropped a person of ~48 px that the identity stage keeps; 0.25 drops nothing it keeps.
3. :func:`select_faces`: per kept tracklet, at most ``per_track`` faces to embed, spread over its length (the
   tracklet is cut into ``per_track`` runs of consecutive faces; from each run the largest face).
4. :func:`merge_tracklets`: average-linkage agglomeration of tracklets: the distance between two groups is
   the mean distance between their embedded faces; the closest pair below ``threshold`` is merged first, and a
   merge is refused when the two groups share a frame (one person is in one place per frame).

:func:`identities_from_tracklets` runs 1-4 given an embedding callback and returns one identity label per
face (-1 for faces of dropped tracklets).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mintime.faces.identities import box_iou, pairwise_distances

__all__ = [
    "Tracklets",
    "link_tracklets",
    "tracklet_sizes",
    "keep_by_size",
    "select_faces",
    "merge_tracklets",
    "faces_to_embed",
    "face_labels",
    "identities_from_tracklets",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tracklets:
    """Faces linked across consecutive sampled frames.

    Attributes:
        track_of: (n,) int64 tracklet index of each face.
        tracks: per tracklet, its (m_k,) int64 face indices in frame order (one face per frame).
        frame_rank: (n,) int64 rank of each face's frame among the distinct frame ids (0 = first).
    """

    track_of: np.ndarray
    tracks: list[np.ndarray]
    frame_rank: np.ndarray

    def __len__(self) -> int:
        return len(self.tracks)


def _check_boxes(boxes: np.ndarray, frame_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    box = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    fid = np.asarray(frame_ids).reshape(-1).astype(np.int64)
    if len(box) != len(fid):
        raise ValueError(f"need one frame id per box, got {len(fid)} frame ids for {len(box)} boxes")
    if len(box) and not np.isfinite(box).all():
        raise ValueError("boxes must be finite")
    return box, fid


def _side(box: np.ndarray) -> np.ndarray:
    """Longer box side, (n,)."""
    return np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])


def link_tracklets(
    boxes: np.ndarray,
    frame_ids: np.ndarray,
    *,
    min_iou: float = 0.3,
    max_centre_shift: float = 0.5,
    max_size_change: float = 1.5,
) -> Tracklets:
    """Links detections of consecutive sampled frames into tracklets (one-to-one per frame pair).

    Args:
        boxes: (n, 4) x1, y1, x2, y2 face boxes in frame pixels.
        frame_ids: (n,) frame of each face (any increasing numbering; only the order of distinct values counts).
        min_iou: a pair with at least this IoU is admissible.
        max_centre_shift: a pair whose centres are closer than this many face sizes (mean of the two longer
            sides) is admissible too (fast motion between sampled frames lowers the IoU first).
        max_size_change: admissible pairs differ in size (longer side) by less than this factor.

    Returns:
        The tracklets; every face belongs to exactly one.
    """
    box, fid = _check_boxes(boxes, frame_ids)
    n = len(box)
    if n == 0:
        return Tracklets(np.zeros(0, np.int64), [], np.zeros(0, np.int64))
    _, rank = np.unique(fid, return_inverse=True)
    rank = rank.astype(np.int64)
    side = _side(box)
    centre = np.stack([(box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2], axis=1)
    track_of = np.full(n, -1, dtype=np.int64)
    next_id = 0
    prev = np.zeros(0, dtype=np.int64)
    from scipy.optimize import linear_sum_assignment

    for r in range(int(rank.max()) + 1):
        cur = np.flatnonzero(rank == r)
        if len(prev) and len(cur):
            iou = box_iou(box[prev], box[cur])
            scale = np.maximum((side[prev][:, None] + side[cur][None, :]) / 2, 1e-6)
            shift = np.linalg.norm(centre[prev][:, None] - centre[cur][None, :], axis=-1) / scale
            ratio = np.maximum(side[prev][:, None], side[cur][None, :]) / np.maximum(
                np.minimum(side[prev][:, None], side[cur][None, :]), 1e-6
            )
            ok = ((iou >= min_iou) | (shift < max_centre_shift)) & (ratio < max_size_change)
            cost = np.where(ok, (1.0 - iou) + shift, 1e6)
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
                if ok[i, j]:
                    track_of[cur[j]] = track_of[prev[i]]
        for j in cur[track_of[cur] < 0].tolist():
            track_of[j] = next_id
            next_id += 1
        prev = cur
    tracks = [np.flatnonzero(track_of == t) for t in range(next_id)]
    tracks = [t[np.argsort(rank[t], kind="stable")] for t in tracks]
    logger.debug("linked %d faces in %d frames into %d tracklets", n, int(rank.max()) + 1, len(tracks))
    return Tracklets(track_of=track_of, tracks=tracks, frame_rank=rank)


def tracklet_sizes(tracklets: Tracklets, boxes: np.ndarray) -> np.ndarray:
    """(k,) float64 mean face size (longer box side, pixels) of each tracklet."""
    side = _side(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    return np.array([side[t].mean() for t in tracklets.tracks], dtype=np.float64)


def keep_by_size(
    tracklets: Tracklets, boxes: np.ndarray, *, min_side: float = 0.0, min_size_ratio: float = 0.25
) -> np.ndarray:
    """Which tracklets are large enough to embed.

    Args:
        tracklets: from :func:`link_tracklets`.
        boxes: (n, 4) the boxes they were linked from.
        min_side: drop tracklets whose mean face size (longer side) is below this many pixels.
        min_size_ratio: drop tracklets whose mean face size is below this fraction of the largest tracklet's
            (0 keeps all; see the module docstring for the default).

    Returns:
        (k,) bool, True = keep.
    """
    sizes = tracklet_sizes(tracklets, boxes)
    if not len(sizes):
        return np.zeros(0, dtype=bool)
    return (sizes >= min_side) & (sizes >= min_size_ratio * sizes.max())


def select_faces(
    tracklets: Tracklets,
    boxes: np.ndarray,
    *,
    keep: np.ndarray | None = None,
    per_track: int = 4,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """Faces to embed: at most ``per_track`` per kept tracklet, spread over its length.

    A tracklet of m faces is cut into ``min(m, per_track)`` runs of consecutive faces of near-equal length; each
    run contributes its largest face (by box area), or its best-scoring face when ``scores`` are given.

    Args:
        tracklets: from :func:`link_tracklets`.
        boxes: (n, 4) boxes.
        keep: (k,) bool tracklets to consider (default all).
        per_track: faces per tracklet (>= 1).
        scores: (n,) optional detection scores used instead of the box area.

    Returns:
        (m,) int64 face indices, sorted.
    """
    if per_track < 1:
        raise ValueError(f"per_track must be >= 1, got {per_track}")
    box = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    merit = (
        np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores is not None
        else (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    )
    keep = np.ones(len(tracklets), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    chosen: list[int] = []
    for t, faces in enumerate(tracklets.tracks):
        if not keep[t]:
            continue
        for run in np.array_split(faces, min(len(faces), per_track)):
            chosen.append(int(run[np.argmax(merit[run])]))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def merge_tracklets(
    tracklets: Tracklets,
    embedded_faces: np.ndarray,
    embeddings: np.ndarray,
    *,
    threshold: float,
    metric: str = "euclidean",
) -> np.ndarray:
    """Groups tracklets into identities by appearance (average linkage, frame-exclusive).

    Args:
        tracklets: from :func:`link_tracklets`.
        embedded_faces: (m,) face indices that were embedded (e.g. :func:`select_faces`).
        embeddings: (m, d) their embeddings, same order.
        threshold: largest mean distance at which two groups are the same person (the embedder's threshold).
        metric: "euclidean" or "cosine".

    Returns:
        (k,) int64 identity label per tracklet, 0..(identities - 1) in order of first appearance; -1 for
        tracklets without an embedded face.
    """
    faces = np.asarray(embedded_faces, dtype=np.int64).reshape(-1)
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or len(emb) != len(faces):
        raise ValueError(f"need (m, d) embeddings for m = {len(faces)} faces, got {emb.shape}")
    k = len(tracklets)
    owner = tracklets.track_of[faces] if len(faces) else np.zeros(0, np.int64)
    present = np.unique(owner)
    labels = np.full(k, -1, dtype=np.int64)
    if not len(present):
        return labels
    dist = pairwise_distances(emb, metric=metric)
    # groups: tracklet sets; sums of face-pair distances and pair counts for average linkage
    members = {int(t): [int(t)] for t in present}
    frames = {int(t): set(tracklets.frame_rank[tracklets.tracks[t]].tolist()) for t in present}
    index = {int(t): np.flatnonzero(owner == t) for t in present}
    ids = [int(t) for t in present]
    g_n = len(ids)
    total = np.zeros((g_n, g_n))
    count = np.zeros((g_n, g_n))
    for a in range(g_n):
        for b in range(a + 1, g_n):
            block = dist[np.ix_(index[ids[a]], index[ids[b]])]
            total[a, b] = total[b, a] = block.sum()
            count[a, b] = count[b, a] = block.size
    alive = np.ones(g_n, dtype=bool)
    while True:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.inf)
        mean[~alive] = np.inf
        mean[:, ~alive] = np.inf
        np.fill_diagonal(mean, np.inf)
        order = np.argsort(mean, axis=None, kind="stable")
        merged = False
        for flat in order.tolist():
            a, b = divmod(flat, g_n)
            if mean[a, b] >= threshold:
                break
            if a > b:
                continue
            ga, gb = ids[a], ids[b]
            if frames[ga] & frames[gb]:  # one person is in one place per frame
                continue
            members[ga] += members.pop(gb)
            frames[ga] |= frames.pop(gb)
            total[a] += total[b]
            total[:, a] += total[:, b]
            count[a] += count[b]
            count[:, a] += count[:, b]
            total[a, a] = count[a, a] = 0
            alive[b] = False
            merged = True
            break
        if not merged:
            break

    def first_seen(group: list[int]) -> tuple[int, int]:
        return min(
            (int(tracklets.frame_rank[tracklets.tracks[t][0]]), int(tracklets.tracks[t][0])) for t in group
        )

    for label, group in enumerate(sorted(members.values(), key=first_seen)):
        labels[group] = label
    return labels


def faces_to_embed(
    boxes: np.ndarray,
    frame_ids: np.ndarray,
    *,
    per_track: int = 4,
    min_side: float = 0.0,
    min_size_ratio: float = 0.25,
    scores: np.ndarray | None = None,
    min_iou: float = 0.3,
    max_centre_shift: float = 0.5,
    max_size_change: float = 1.5,
) -> tuple[Tracklets, np.ndarray]:
    """Steps 1-3: tracklets, the size filter and the bounded choice of faces to embed.

    Returns:
        The tracklets and the (m,) int64 indices of the faces to embed (see :func:`identities_from_tracklets`).
    """
    tracklets = link_tracklets(
        boxes, frame_ids, min_iou=min_iou, max_centre_shift=max_centre_shift, max_size_change=max_size_change
    )
    keep = keep_by_size(tracklets, boxes, min_side=min_side, min_size_ratio=min_size_ratio)
    faces = select_faces(tracklets, boxes, keep=keep, per_track=per_track, scores=scores)
    logger.debug(
        "%d faces → %d tracklets (%d kept) → %d to embed",
        len(boxes),
        len(tracklets),
        int(keep.sum()),
        len(faces),
    )
    return tracklets, faces


def face_labels(
    tracklets: Tracklets,
    faces: np.ndarray,
    embeddings: np.ndarray,
    *,
    threshold: float,
    metric: str = "euclidean",
) -> np.ndarray:
    """Step 4: the (n,) int64 identity label of every face (-1 = dropped before embedding) from the embeddings
    of ``faces`` (:func:`faces_to_embed`)."""
    emb = np.asarray(embeddings) if len(faces) else np.zeros((0, 1))
    track_label = merge_tracklets(tracklets, faces, emb, threshold=threshold, metric=metric)
    return track_label[tracklets.track_of] if len(tracklets.track_of) else np.zeros(0, np.int64)


def identities_from_tracklets(
    boxes: np.ndarray,
    frame_ids: np.ndarray,
    embed: Callable[[np.ndarray], np.ndarray],
    *,
    threshold: float,
    metric: str = "euclidean",
    per_track: int = 4,
    min_side: float = 0.0,
    min_size_ratio: float = 0.25,
    scores: np.ndarray | None = None,
    min_iou: float = 0.3,
    max_centre_shift: float = 0.5,
    max_size_change: float = 1.5,
) -> tuple[np.ndarray, Tracklets, np.ndarray]:
    """Tracklets, size filter, bounded embedding and appearance merge in one call.

    Args:
        boxes: (n, 4) face boxes; frame_ids: (n,) their frames (see :func:`link_tracklets`).
        embed: called once with the (m,) int64 indices of the faces to embed; returns (m, d) embeddings.
        threshold, metric: the embedder's same-person distance and metric.
        per_track: faces embedded per tracklet.
        min_side, min_size_ratio: the size filter (:func:`keep_by_size`).
        scores: optional (n,) detection scores for :func:`select_faces`.
        min_iou, max_centre_shift, max_size_change: linking (:func:`link_tracklets`).

    Returns:
        (n,) int64 identity label per face (-1 = dropped before embedding), the tracklets, and the (m,)
        embedded face indices.
    """
    tracklets, faces = faces_to_embed(
        boxes,
        frame_ids,
        per_track=per_track,
        min_side=min_side,
        min_size_ratio=min_size_ratio,
        scores=scores,
        min_iou=min_iou,
        max_centre_shift=max_centre_shift,
        max_size_change=max_size_change,
    )
    emb = np.asarray(embed(faces)) if len(faces) else np.zeros((0, 1))
    return face_labels(tracklets, faces, emb, threshold=threshold, metric=metric), tracklets, faces
