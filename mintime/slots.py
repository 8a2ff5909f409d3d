"""Slot logic: how the faces of a video's identities fill the ``F`` input slots of the temporal model.

Pure numpy, no I/O. The training dataset, ``mintime predict`` and the Triton ``face_pipeline`` model all call
:func:`build_slots`, so training and serving build their inputs the same way.

Pipeline (``build_slots``)
--------------------------
1. Identities are ordered by mean face (crop) width, descending, stable (the original's default ordering) and
   at most ``max_identities`` are kept.
2. :func:`allocate_slots` shares the ``F`` slots among the kept identities (quota table, spare redistribution,
   remainder to the last identity).
3. Each identity's faces are sorted by frame index and sub-sampled uniformly with :func:`sample_indices` when it
   has more faces than slots; an identity with fewer faces than slots gets *dummy* slots at the end of its block.
4. Per slot: ``mask`` (False on dummies, or all True in the ``"all_true"`` regime of the original training loader),
   ``identities_mask`` (contiguous identity blocks), ``size_ids`` (face/frame area bucket, 0 for dummies),
   ``positions`` (temporal-coherent token positions, CLS = 0).

Deliberate differences from the original code (see ``shared/docs/mintime-original.md`` §4, §7.1, §8)
----------------------------------------------------------------------------------------------------
* **Slot allocation** (§4.3): the original adds an identity's shortfall to the next identity's *face count*, so a
  middle identity can be given more slots than it has faces (dummies in the middle of the sequence) while a
  later identity still has unused faces (``[2, 4, 20] -> [2, 7, 7]``). The default allocation never gives an
  identity more slots than faces, except the last identity when the video has fewer than ``F`` faces in total
  (``[2, 4, 20] -> [2, 4, 10]``), and then only the unavoidable ``F - total faces`` dummies. The inflated count
  also makes the original give avoidable dummies to the last identity (``[9, 4, 3] -> [8, 4, 4]`` although the
  video has 16 faces; fixed: ``[9, 4, 3]``). Whenever the original gives no avoidable dummy, both rules give the
  same allocation (checked exhaustively in the tests). ``original=True`` / ``original_allocation=True``
  reproduces the original exactly.
* **Quota table**: the original defines it for 1..4 identities only (``[F]``, ``[F/2]*2``,
  ``[F/3, F/3, F/4]``, ``[F/3, F/3, F/8, F/8]``, integer parts); for 5+ identities it raises a KeyError.
  :func:`slot_quotas` extends it with ``F // n`` per identity and never returns a quota below 1 (this changes
  nothing for F = 8, 16 or 32 and n <= 4).
* **Loose faces**: the original training loader adds, to identity 0, the first "discarded" face (a face the
  clustering put in no identity) of every frame in which identity 0 has no face, which may be another person.
  This is **not** reproduced: each identity contributes only its own faces (predict.py did not do it either).
* **Size ratio at predict time** (§4.7): predict.py divides the face area w*h by half the frame area, which
  doubles the ratio. The training formula (integer percent of the frame area) is used everywhere;
  ``size_ratio_percent(..., original_predict=True)`` reproduces the doubled value for tests.
* **Mask** (§4.5): the current training loader's mask is always all True (its condition is checked after the
  padding), while predict.py builds the correct mask (False on dummies). ``mask_regime="correct"`` is the
  default; ``"all_true"`` reproduces the training loader, to test fidelity against the published weights.
* **Sampling**: the original alternates ``round(linspace(0, L-2, k))`` (odd dataset index) and
  ``round(linspace(1, L-1, k))`` (even index); predict.py always uses the odd rule. Both are available
  (``sampling="odd" | "even"``); :func:`variant_for_index` gives the training alternation.
* Dummy slots get the largest frame index read so far (over all identities placed before, and this one),
  as in the original; they share that frame's temporal position. With the correct mask they are hidden anyway.
* A video with no face raises :class:`NoFaceError` (the original crashed or raised a generic exception).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "NoFaceError",
    "FaceRecord",
    "SlotPlan",
    "slot_quotas",
    "allocate_slots",
    "sample_indices",
    "variant_for_index",
    "size_ratio_percent",
    "size_id",
    "temporal_positions",
    "identities_block_mask",
    "build_slots",
    "SAMPLING_VARIANTS",
    "MASK_REGIMES",
    "NUM_SIZE_BUCKETS",
    "SIZE_BUCKET_PERCENT",
]

logger = logging.getLogger(__name__)

#: Sampling rules: "odd" = round(linspace(0, L-2, k)), "even" = round(linspace(1, L-1, k)).
SAMPLING_VARIANTS = ("odd", "even")
#: Mask regimes: "correct" hides dummy slots, "all_true" = the original training loader (every slot visible).
MASK_REGIMES = ("correct", "all_true")
#: Size buckets: ids 1..20, each 5 % of the frame area wide (id 0 = CLS / dummy).
NUM_SIZE_BUCKETS = 20
SIZE_BUCKET_PERCENT = 5


class NoFaceError(ValueError):
    """Raised when a video has no face to put in the slots."""


@dataclass(frozen=True)
class FaceRecord:
    """One face crop of an identity.

    Attributes:
        frame_index: index of the frame the crop comes from (in the decoded file).
        crop_h: height in pixels of the padded square crop, before resizing to the model input.
        crop_w: width in pixels of the same crop (the identity ordering uses the mean width).
        key: anything the caller uses to find the pixels (an index, a path, an array); not compared.
    """

    frame_index: int
    crop_h: int
    crop_w: int
    key: object = field(default=None, compare=False)


@dataclass
class SlotPlan:
    """How the ``F`` slots of one video are filled.

    Attributes:
        faces: F entries, the :class:`FaceRecord` in each slot, ``None`` for a dummy (black) slot.
        slot_identity: (F,) int64, index of the slot's identity in the kept order (dummies included).
        mask: (F,) bool, True where the model may attend the slot.
        identities_mask: (F, F) bool, ``[i, j]`` True iff slots i and j belong to the same identity.
        size_ids: (F,) int64, face/frame area bucket 1..20, 0 for dummies.
        positions: (1 + F*P,) int64, token position ids (CLS first = 0).
        frame_indices: (F,) int64, frame index of each slot (dummies: the largest frame index read so far).
        slots_per_identity: slots given to each kept identity, in kept order; sums to F.
        identity_order: for each kept identity, its index in the list passed to :func:`build_slots`.
    """

    faces: list[FaceRecord | None]
    slot_identity: np.ndarray
    mask: np.ndarray
    identities_mask: np.ndarray
    size_ids: np.ndarray
    positions: np.ndarray
    frame_indices: np.ndarray
    slots_per_identity: list[int]
    identity_order: list[int]

    @property
    def num_slots(self) -> int:
        """F, the number of slots."""
        return len(self.faces)

    @property
    def num_identities(self) -> int:
        """Number of kept identities."""
        return len(self.slots_per_identity)

    @property
    def is_dummy(self) -> np.ndarray:
        """(F,) bool, True on dummy slots (independent of the mask regime)."""
        return np.array([f is None for f in self.faces], dtype=bool)

    @property
    def num_dummies(self) -> int:
        """Number of dummy slots."""
        return int(self.is_dummy.sum())

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The temporal model's slot inputs of this plan (training batches), without a batch dimension.

        Returns:
            ``mask`` (F,) bool, ``identities_mask`` (F, F) bool, ``size_ids`` (F,) int64, ``positions``
            (1 + F*P,) int64. The face stage's tensors, named by the contract, are
            :class:`mintime.faces.stage.SlotTensors`.
        """
        return {
            "mask": np.ascontiguousarray(self.mask, dtype=np.bool_),
            "identities_mask": np.ascontiguousarray(self.identities_mask, dtype=np.bool_),
            "size_ids": np.ascontiguousarray(self.size_ids, dtype=np.int64),
            "positions": np.ascontiguousarray(self.positions, dtype=np.int64),
        }

    def summary(self) -> dict[str, object]:
        """A JSON-serialisable description of the slot map (plain ints/bools/lists)."""
        return {
            "slots_per_identity": [int(n) for n in self.slots_per_identity],
            "identity_order": [int(i) for i in self.identity_order],
            "slot_identity": self.slot_identity.astype(int).tolist(),
            "frame_indices": self.frame_indices.astype(int).tolist(),
            "mask": self.mask.astype(bool).tolist(),
            "dummy": self.is_dummy.tolist(),
            "size_ids": self.size_ids.astype(int).tolist(),
        }


# --- allocation --------------------------------------------------------------------------------------------------
def slot_quotas(num_identities: int, num_slots: int = 16) -> list[int]:
    """Initial slot quota of each identity (before redistribution).

    The original's table for n <= 4 (integer parts): ``[F]``, ``[F/2, F/2]``, ``[F/3, F/3, F/4]``,
    ``[F/3, F/3, F/8, F/8]`` (F = 16: ``[16]``, ``[8, 8]``, ``[5, 5, 4]``, ``[5, 5, 2, 2]``). Extension: n >= 5
    gets ``F // n`` each, and no quota is below 1 (a no-op for F in {8, 16, 32}, n <= 4).

    Args:
        num_identities: n, 1 <= n <= num_slots.
        num_slots: F.

    Returns:
        n quotas; their sum is <= F.
    """
    n, f = int(num_identities), int(num_slots)
    if f < 1:
        raise ValueError(f"num_slots must be >= 1, got {f}")
    if not 1 <= n <= f:
        raise ValueError(f"the number of identities must be in 1..{f} (num_slots), got {n}")
    if n == 1:
        table = [f]
    elif n == 2:
        table = [f // 2, f // 2]
    elif n == 3:
        table = [f // 3, f // 3, f // 4]
    elif n == 4:
        table = [f // 3, f // 3, f // 8, f // 8]
    else:
        table = [f // n] * n
    return [max(q, 1) for q in table]


def allocate_slots(counts: Sequence[int], num_slots: int = 16, *, original: bool = False) -> list[int]:
    """Share ``num_slots`` slots among identities that have ``counts`` faces each (in kept order).

    Default (fixed) rule: each identity first gets ``min(count, quota)`` (:func:`slot_quotas`); the slots left
    over go, walking the identities in order, to those that still have unused faces; whatever is still missing
    (the video has fewer than F faces in total) goes to the last identity as dummy slots. So an identity never
    gets more slots than faces, except the last one when that is unavoidable, and there are exactly
    ``max(0, F - sum(counts))`` dummies. A single identity always gets F. The original's "inheritance" of a
    shortfall by the next identity only ever acted through its bug; without it, leftover slots still reach the
    identities with spare faces through the ordered walk, and the result equals the original's whenever the
    original gives no avoidable dummy.

    ``original=True`` reproduces the original exactly (§4.3), including its bug: a shortfall of identity i is
    added to identity i+1's *face count* before i+1 is compared with its quota, so a middle identity can be given
    dummy slots while a later identity has unused faces (``[2, 4, 20] -> [2, 7, 7]``).

    Args:
        counts: number of faces of each identity, in kept order (>= 0 each, at least one identity).
        num_slots: F.
        original: reproduce the original allocation, bug included.

    Returns:
        Slots per identity (list of int, same length as ``counts``), summing to ``num_slots``.
    """
    counts = [int(c) for c in counts]
    if not counts:
        raise ValueError("allocate_slots needs at least one identity")
    if any(c < 0 for c in counts):
        raise ValueError(f"face counts must be >= 0, got {counts}")
    n, f = len(counts), int(num_slots)
    quotas = slot_quotas(n, f)
    if n == 1:
        return [f]
    if original:
        slots, spare = _original_first_pass(counts, quotas)
    else:
        slots = [min(c, q) for c, q in zip(counts, quotas, strict=True)]
        spare = [c - s for c, s in zip(counts, slots, strict=True)]
    remaining = f - sum(slots)
    for i in range(n):
        if remaining <= 0:
            break
        extra = min(spare[i], remaining)
        slots[i] += extra
        remaining -= extra
    if remaining > 0:  # fewer faces than slots: dummies in the last identity
        slots[-1] += remaining
    logger.debug("allocate_slots(%s, F=%d, original=%s) -> %s", counts, f, original, slots)
    return slots


def _original_first_pass(counts: list[int], quotas: list[int]) -> tuple[list[int], list[int]]:
    """The original's quota pass: inherited shortfall is added to the next identity's face count."""
    work = list(counts)
    spare = []
    n = len(work)
    for i in range(n):
        if work[i] < quotas[i] and i < n - 1:
            work[i + 1] += quotas[i] - work[i]
            spare.append(0)
        elif work[i] > quotas[i]:
            spare.append(work[i] - quotas[i])
            work[i] = quotas[i]
        else:
            spare.append(0)
    return work, spare


# --- sampling ----------------------------------------------------------------------------------------------------
def sample_indices(length: int, k: int, *, variant: str = "odd") -> np.ndarray:
    """Uniform sub-sampling of ``k`` of an identity's ``length`` faces (sorted by frame).

    ``"odd"``: ``round(linspace(0, L-2, k))``; ``"even"``: ``round(linspace(1, L-1, k))``; numpy rounding
    (half to even), as the original. When ``k >= length`` all faces are taken (``arange(length)``).

    Args:
        length: L, number of faces of the identity (>= 0).
        k: number of slots of the identity (>= 0).
        variant: "odd" or "even".

    Returns:
        (min(k, L),) int64 indices into the faces, non-decreasing.
    """
    if variant not in SAMPLING_VARIANTS:
        raise ValueError(f"variant must be one of {SAMPLING_VARIANTS}, got {variant!r}")
    length, k = int(length), int(k)
    if length < 0 or k < 0:
        raise ValueError(f"length and k must be >= 0, got {length}, {k}")
    if k >= length:
        return np.arange(length, dtype=np.int64)
    start, stop = (0, length - 2) if variant == "odd" else (1, length - 1)
    return np.round(np.linspace(start, stop, k)).astype(np.int64)


def variant_for_index(index: int) -> str:
    """The training loader's alternation: ``"odd"`` for an odd dataset index, ``"even"`` for an even one."""
    return "odd" if int(index) % 2 else "even"


# --- size embedding ids ------------------------------------------------------------------------------------------
def size_ratio_percent(
    crop_h: float, crop_w: float, frame_w: float, frame_h: float, *, original_predict: bool = False
) -> int:
    """Integer percent of the frame area covered by a (padded, square) face crop.

    Training formula: ``int(100 * crop_h * crop_w / (frame_w * frame_h))`` (the original's two ``/2`` cancel).

    Args:
        crop_h, crop_w: crop size in pixels, before resizing to the model input.
        frame_w, frame_h: frame (display) size in pixels.
        original_predict: reproduce predict.py's bug (face area not halved, frame area halved: the ratio is
            doubled, and can exceed 100). For tests only.

    Returns:
        The ratio as an int (0..100 for in-frame crops).
    """
    frame_area = float(frame_w) * float(frame_h)
    if frame_area <= 0:
        raise ValueError(f"frame size must be positive, got {frame_w}x{frame_h}")
    face_area = float(crop_h) * float(crop_w)
    if original_predict:
        return int(face_area * 100 / (frame_area / 2))
    return int(face_area * 100 / frame_area)


def size_id(ratio: int) -> int:
    """Size-embedding bucket of a face/frame area ratio (percent).

    ``1`` for ratio <= 5, else ``ceil(ratio / 5)``, clamped to 20 (the original raised an IndexError above 100,
    which only the doubled predict-time ratio could reach). Id 0 is reserved for CLS and dummy slots.

    Args:
        ratio: integer percent, >= 0.

    Returns:
        Bucket id in 1..20.
    """
    ratio = int(ratio)
    if ratio < 0:
        raise ValueError(f"ratio must be >= 0, got {ratio}")
    if ratio <= SIZE_BUCKET_PERCENT:
        return 1
    return min(math.ceil(ratio / SIZE_BUCKET_PERCENT), NUM_SIZE_BUCKETS)


# --- positions and masks -----------------------------------------------------------------------------------------
def temporal_positions(frame_indices: np.ndarray | Sequence[int], num_patches: int = 49) -> np.ndarray:
    """Temporal-coherent token position ids.

    Distinct frame indices are ranked 1, 2, ... in ascending order (faces from the same frame share a rank,
    whatever their identity). Slot s with rank r covers ids ``(r-1)*P + 1 .. r*P`` in patch order; CLS is 0.

    Args:
        frame_indices: (F,) int, frame index of each slot.
        num_patches: P, tokens per slot.

    Returns:
        (1 + F*P,) int64 position ids; max id <= F*P.
    """
    frames = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    p = int(num_patches)
    if p < 1:
        raise ValueError(f"num_patches must be >= 1, got {p}")
    _, inverse = np.unique(frames, return_inverse=True)
    ranks = inverse.reshape(-1).astype(np.int64) + 1
    tokens = (ranks[:, None] - 1) * p + np.arange(1, p + 1, dtype=np.int64)[None, :]
    return np.concatenate([np.zeros(1, dtype=np.int64), tokens.reshape(-1)])


def identities_block_mask(slots_per_identity: Sequence[int]) -> np.ndarray:
    """(F, F) bool block-diagonal mask: ``[i, j]`` True iff slots i and j belong to the same identity."""
    owner = np.repeat(np.arange(len(slots_per_identity)), [int(n) for n in slots_per_identity])
    return owner[:, None] == owner[None, :]


# --- the whole plan ----------------------------------------------------------------------------------------------
def build_slots(
    identities: Sequence[Sequence[FaceRecord]],
    *,
    frame_size: tuple[int, int],
    num_slots: int = 16,
    max_identities: int = 2,
    num_patches: int = 49,
    sampling: str = "odd",
    mask_regime: str = "correct",
    original_allocation: bool = False,
    order_by_size: bool = True,
) -> SlotPlan:
    """Fill the slots of one video from its identities.

    Args:
        identities: one sequence of :class:`FaceRecord` per identity (any order of faces; empty identities are
            ignored).
        frame_size: (W, H) of the video frames, for the size ratio.
        num_slots: F.
        max_identities: keep at most this many identities (after ordering).
        num_patches: P, tokens per slot (for ``positions``).
        sampling: "odd" (predict.py, odd training indices) or "even"; see :func:`variant_for_index`.
        mask_regime: "correct" (dummies hidden) or "all_true" (the original training loader).
        original_allocation: reproduce the original slot allocation bug (see :func:`allocate_slots`).
        order_by_size: order identities by mean crop width, descending (stable); False keeps the input order.

    Returns:
        The :class:`SlotPlan`.

    Raises:
        NoFaceError: no identity has a face.
    """
    if sampling not in SAMPLING_VARIANTS:
        raise ValueError(f"sampling must be one of {SAMPLING_VARIANTS}, got {sampling!r}")
    if mask_regime not in MASK_REGIMES:
        raise ValueError(f"mask_regime must be one of {MASK_REGIMES}, got {mask_regime!r}")
    if max_identities < 1:
        raise ValueError(f"max_identities must be >= 1, got {max_identities}")
    frame_w, frame_h = frame_size

    candidates = [i for i, faces in enumerate(identities) if len(faces) > 0]
    if not candidates:
        raise NoFaceError("no face found in the video")
    if order_by_size:
        mean_width = {i: float(np.mean([f.crop_w for f in identities[i]])) for i in candidates}
        candidates = sorted(candidates, key=lambda i: -mean_width[i])  # sorted() is stable
    kept = candidates[: int(max_identities)]
    if len(kept) < len(candidates):
        logger.debug("keeping %d of %d identities: %s", len(kept), len(candidates), kept)

    counts = [len(identities[i]) for i in kept]
    slots_per_identity = allocate_slots(counts, num_slots, original=original_allocation)

    faces: list[FaceRecord | None] = []
    frames: list[int] = []
    owner: list[int] = []
    for rank, (idx, k) in enumerate(zip(kept, slots_per_identity, strict=True)):
        ordered = sorted(identities[idx], key=lambda f: int(f.frame_index))  # stable
        chosen = [ordered[j] for j in sample_indices(len(ordered), k, variant=sampling)]
        faces.extend(chosen)
        frames.extend(int(f.frame_index) for f in chosen)
        n_dummies = k - len(chosen)
        if n_dummies:
            # the original: the largest frame number read so far, over every identity placed until now
            filler = max(frames) if frames else 0
            faces.extend([None] * n_dummies)
            frames.extend([filler] * n_dummies)
        owner.extend([rank] * k)

    dummy = np.array([f is None for f in faces], dtype=bool)
    mask = ~dummy if mask_regime == "correct" else np.ones(len(faces), dtype=bool)
    size_ids = np.array(
        [
            0 if f is None else size_id(size_ratio_percent(f.crop_h, f.crop_w, frame_w, frame_h))
            for f in faces
        ],
        dtype=np.int64,
    )
    frame_indices = np.asarray(frames, dtype=np.int64)
    return SlotPlan(
        faces=faces,
        slot_identity=np.asarray(owner, dtype=np.int64),
        mask=mask,
        identities_mask=identities_block_mask(slots_per_identity),
        size_ids=size_ids,
        positions=temporal_positions(frame_indices, num_patches),
        frame_indices=frame_indices,
        slots_per_identity=list(slots_per_identity),
        identity_order=list(kept),
    )
