"""Identity clustering: which detected faces of a video belong to the same person.

Faces of the sampled frames are nodes; two kinds of evidence join them:

1. **Spatial-temporal continuity** ("track" links): faces in nearby sampled frames (at most ``max_frame_gap``
   sampled frames apart) whose boxes overlap (IoU >= ``link_iou``) and whose embeddings are not grossly
   different (distance < ``track_distance_factor`` x ``distance_threshold``).
2. **Appearance** links: faces of different frames whose embedding distance is below ``distance_threshold``
   (the original MINTIME's only evidence: a cosine-similarity graph, ``mintime-original.md`` §5.3).

Links are merged greedily with a union-find, strongest first (track links by decreasing IoU, then appearance
links by increasing distance), and a merge is **refused when it would put two faces of the same frame into one
identity** (one person is in one place per frame). So two look-alike faces side by side (twins, or a deepfake
swapped onto a similar face) stay apart when their tracks are clear, and a weak link cannot chain two people who
are seen together. Identities are the resulting components.

Small components are then dropped (label -1):

* fewer than ``min_faces`` faces (a one-frame false detection); when the input has fewer distinct frames than
  ``min_faces`` (a still image, a one-frame clip), the bar is lowered to that number of frames;
* fewer than ``min_cluster_ratio`` x the size of the largest component. This is the README's
  ``valid_cluster_size_ratio`` ("valid cluster size percentage", default 0.2; the original computes it but never
  applies it). We read it relative to the **largest identity** rather than to the number of faces, so that a
  crowd of many people (each a small share of all faces) is not wiped out; a face seen in 2 of 16 sampled frames
  next to a person seen in all 16 is dropped (2 < 3.2);
* a mean face size (longer box side) below ``min_size_ratio`` x that of the largest remaining identity (0.4
  by default, i.e. ~16 % of its area). Not in the original. Measured reason: on the DFDC sample
  (``dfdc_portrait_fake_720x1280.mp4``, 16 sampled frames, MTCNN) a static blurry pattern at the frame edge is
  detected in 3 frames with scores 0.95-0.99 and consistent embeddings; it is 50 px against the person's
  137 px and would otherwise become a second identity and take slots. The price: a genuine background face
  less than 0.4x the main face's side is not analysed (at that size the crops are low-resolution anyway);
  set ``min_size_ratio=0`` to keep every recurring face.

Identities are ordered by mean face size, largest first (the original's order), ties by face count.

Limits (honest): a *static* face of a reasonable size that is present in many sampled frames — a poster, a
printed or cartoon face, a face on a screen — is consistent in both appearance and position, so it survives as
an identity; nothing here can tell it from a person sitting still (box jitter of MTCNN on a small face is
several % of its size, like a live face's). It only loses the ordering when it is smaller than the real faces,
and the slot allocation then gives it fewer or no slots. Detection-score and motion filters were left out: the
false detection above scores 0.95-0.99, and no labelled footage is available to calibrate a motion rule.

Pure numpy; no I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["pairwise_distances", "clusters_from_labels", "IdentityClusters", "cluster_identities", "box_iou"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdentityClusters:
    """The result of :func:`cluster_identities`.

    Attributes:
        labels: (n,) int64 identity index per face (index into ``identities``), -1 for dropped faces.
        identities: per identity, the (m_k,) int64 face indices in temporal order (frame id, then input order).
        mean_sizes: (k,) float64 mean face size per identity, in pixels (mean of the box's longer side).
        mean_area_ratios: (k,) float64 mean box area / frame area per identity.
        num_frames: (k,) int64 distinct frames per identity (= face count, since an identity has at most one
            face per frame).
    """

    labels: np.ndarray
    identities: list[np.ndarray]
    mean_sizes: np.ndarray
    mean_area_ratios: np.ndarray
    num_frames: np.ndarray

    def __len__(self) -> int:
        return len(self.identities)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes.

    Args:
        a: (n, 4) x1, y1, x2, y2.
        b: (m, 4) x1, y1, x2, y2.

    Returns:
        (n, m) float64 IoU in [0, 1].
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def pairwise_distances(
    a: np.ndarray, b: np.ndarray | None = None, *, metric: str = "euclidean"
) -> np.ndarray:
    """Distances between embeddings.

    Args:
        a: (n, d) float embeddings.
        b: (m, d) float embeddings; ``a`` when None.
        metric: "euclidean" or "cosine" (1 - cosine similarity; rows are L2-normalised first).

    Returns:
        (n, m) float64 distances (0 on the diagonal of a self-comparison, up to rounding).
    """
    a = np.asarray(a, dtype=np.float64)
    b = a if b is None else np.asarray(b, dtype=np.float64)
    if metric == "euclidean":
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.maximum(sq, 0.0))
    if metric == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return np.clip(1.0 - an @ bn.T, 0.0, 2.0)
    raise ValueError(f"unknown metric {metric!r}; expected 'euclidean' or 'cosine'")


class _FrameExclusiveUnionFind:
    """Union-find whose components never hold two faces of the same frame."""

    def __init__(self, frame_rank: np.ndarray) -> None:
        self.parent = np.arange(len(frame_rank))
        self.frames: list[set[int]] = [{int(r)} for r in frame_rank]
        self.refused = 0

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, i: int, j: int) -> bool:
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return False
        if not self.frames[ri].isdisjoint(self.frames[rj]):
            self.refused += 1
            return False
        if len(self.frames[ri]) < len(self.frames[rj]):
            ri, rj = rj, ri
        self.parent[rj] = ri
        self.frames[ri] |= self.frames[rj]
        self.frames[rj] = set()
        return True


def _link(
    uf: _FrameExclusiveUnionFind,
    dist: np.ndarray,
    iou: np.ndarray,
    gap: np.ndarray,
    *,
    distance_threshold: float,
    link_iou: float,
    max_frame_gap: int,
    track_distance_factor: float,
) -> tuple[int, int]:
    """Union the faces: track links first, then appearance links (most similar first).

    Args:
        uf: the union-find over the n faces (refuses two faces of one frame).
        dist: (n, n) appearance distances; iou: (n, n) box IoU; gap: (n, n) distance in sampled-frame ranks.

    Returns:
        (track merges, appearance merges).
    """
    n = len(dist)
    upper = np.triu(np.ones((n, n), dtype=bool), k=1) & (
        gap > 0
    )  # each unordered pair once, other frames only
    # 1. track links: overlapping boxes in nearby sampled frames, appearance not grossly different
    track = (
        upper
        & (gap <= max_frame_gap)
        & (iou >= link_iou)
        & (dist < track_distance_factor * distance_threshold)
    )
    ti, tj = np.nonzero(track)
    order = np.lexsort(
        (dist[ti, tj], gap[ti, tj], -iou[ti, tj])
    )  # IoU desc, then nearer frames, then distance
    merged_track = sum(uf.union(int(ti[k]), int(tj[k])) for k in order)
    # 2. appearance links, most similar first
    ai, aj = np.nonzero(upper & (dist < distance_threshold))
    order = np.argsort(dist[ai, aj], kind="stable")
    merged_appear = sum(uf.union(int(ai[k]), int(aj[k])) for k in order)
    return merged_track, merged_appear


def _keep_components(
    components: list[np.ndarray],
    side: np.ndarray,
    num_distinct: int,
    *,
    min_faces: int,
    min_cluster_ratio: float,
    min_size_ratio: float,
) -> tuple[list[np.ndarray], int]:
    """The components that count as identities (count rules, then the size rule) and the count needed."""
    sizes = np.array([len(c) for c in components])
    need = max(min(int(min_faces), num_distinct), int(np.ceil(min_cluster_ratio * sizes.max() - 1e-9)), 1)
    kept = [c for c in components if len(c) >= need]
    if kept and min_size_ratio > 0:
        largest = max(side[c].mean() for c in kept)
        kept = [c for c in kept if side[c].mean() >= min_size_ratio * largest]
    return kept, need


def cluster_identities(
    embeddings: np.ndarray,
    boxes: np.ndarray,
    frame_ids: np.ndarray,
    *,
    frame_size: tuple[int, int],
    distance_threshold: float,
    metric: str = "euclidean",
    link_iou: float = 0.3,
    max_frame_gap: int = 2,
    track_distance_factor: float = 1.25,
    min_cluster_ratio: float = 0.2,
    min_faces: int = 2,
    min_size_ratio: float = 0.4,
) -> IdentityClusters:
    """Groups the faces of a video into identities (see the module docstring for the method).

    Args:
        embeddings: (n, d) float32 face embeddings (e.g. from :mod:`mintime.faces.embedder`).
        boxes: (n, 4) float x1, y1, x2, y2 in frame pixels.
        frame_ids: (n,) int frame of each face (any increasing numbering, e.g. the frame index in the file;
            only the order of the distinct values matters).
        frame_size: (W, H) of the frames, for the area ratios.
        distance_threshold: same-person distance in ``metric`` (the embedder's ``threshold``).
        metric: "euclidean" or "cosine" (the embedder's ``metric``).
        link_iou: least box IoU for a track link.
        max_frame_gap: track links join faces at most this many *sampled* frames apart (ranks of the distinct
            ``frame_ids``; 1 = consecutive sampled frames), not file frame numbers.
        track_distance_factor: a track link also needs distance < factor x ``distance_threshold`` (it may
            bridge pose or blur changes, never two clearly different faces).
        min_cluster_ratio: drop identities with fewer faces than this fraction of the largest identity.
        min_faces: drop identities with fewer faces (lowered to the number of distinct frames when smaller).
        min_size_ratio: after the count rules, drop identities whose mean face size (longer box side) is below
            this fraction of the largest remaining identity's (0 keeps all).

    Returns:
        The identities, sorted by mean face size (largest first), and the per-face labels.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    box = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    fid = np.asarray(frame_ids).reshape(-1).astype(np.int64)
    n = len(fid)
    if emb.ndim != 2 or len(emb) != n or len(box) != n:
        raise ValueError(
            f"need n embeddings (n, d), boxes (n, 4), frame ids (n,); got {emb.shape}, {box.shape}, {fid.shape}"
        )
    if n == 0:
        empty = np.zeros(0, dtype=np.float64)
        return IdentityClusters(np.zeros(0, np.int64), [], empty, empty.copy(), np.zeros(0, np.int64))

    _, rank = np.unique(fid, return_inverse=True)  # (n,) rank of each face's frame among the sampled frames
    num_distinct = int(rank.max()) + 1
    dist = pairwise_distances(emb, metric=metric)
    uf = _FrameExclusiveUnionFind(rank)
    merged_track, merged_appear = _link(
        uf,
        dist,
        box_iou(box, box),
        np.abs(rank[:, None] - rank[None, :]),
        distance_threshold=distance_threshold,
        link_iou=link_iou,
        max_frame_gap=max_frame_gap,
        track_distance_factor=track_distance_factor,
    )
    roots = np.array([uf.find(i) for i in range(n)])
    logger.debug(
        "linked %d faces in %d frames: %d track + %d appearance merges, %d refused (same frame)",
        n,
        num_distinct,
        merged_track,
        merged_appear,
        uf.refused,
    )
    return clusters_from_labels(
        roots,
        box,
        fid,
        frame_size=frame_size,
        min_cluster_ratio=min_cluster_ratio,
        min_faces=min_faces,
        min_size_ratio=min_size_ratio,
    )


def clusters_from_labels(
    labels: np.ndarray,
    boxes: np.ndarray,
    frame_ids: np.ndarray,
    *,
    frame_size: tuple[int, int],
    min_cluster_ratio: float = 0.2,
    min_faces: int = 2,
    min_size_ratio: float = 0.4,
) -> IdentityClusters:
    """Identities from a grouping of the faces: the count and size rules, then ordered by mean face size.

    Shared by :func:`cluster_identities` (union-find roots) and the tracklet path
    (:func:`mintime.faces.tracklets.identities_from_tracklets`).

    Args:
        labels: (n,) int group of each face; negative = dropped before grouping.
        boxes: (n, 4) x1, y1, x2, y2; frame_ids: (n,) frame of each face.
        frame_size: (W, H) for the area ratios.
        min_cluster_ratio, min_faces, min_size_ratio: see :func:`cluster_identities`.
    """
    box = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    fid = np.asarray(frame_ids).reshape(-1).astype(np.int64)
    groups = np.asarray(labels).reshape(-1)
    n = len(fid)
    _, rank = np.unique(fid, return_inverse=True)
    num_distinct = int(rank.max()) + 1 if n else 0
    components = [np.flatnonzero(groups == r) for r in np.unique(groups[groups >= 0])]
    side = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    kept, need = (
        _keep_components(
            components,
            side,
            num_distinct,
            min_faces=min_faces,
            min_cluster_ratio=min_cluster_ratio,
            min_size_ratio=min_size_ratio,
        )
        if components
        else ([], 0)
    )

    # --- order by mean face size (longer box side), then by face count -----------------------------------------
    width, height = frame_size
    area = (
        np.clip(box[:, 2] - box[:, 0], 0, None)
        * np.clip(box[:, 3] - box[:, 1], 0, None)
        / float(width * height)
    )
    kept.sort(key=lambda c: (-side[c].mean(), -len(c), int(c.min())))
    identities = [c[np.lexsort((c, fid[c]))].astype(np.int64) for c in kept]
    out_labels = np.full(n, -1, dtype=np.int64)
    for k, c in enumerate(identities):
        out_labels[c] = k
    logger.debug("%d groups, %d kept (min size %d)", len(components), len(identities), need)
    return IdentityClusters(
        labels=out_labels,
        identities=identities,
        mean_sizes=np.array([side[c].mean() for c in identities], dtype=np.float64),
        mean_area_ratios=np.array([area[c].mean() for c in identities], dtype=np.float64),
        num_frames=np.array([len(np.unique(rank[c])) for c in identities], dtype=np.int64),
    )
