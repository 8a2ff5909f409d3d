"""Attention explanation: the CLS attention of the last layer -> per-slot and per-identity scores.

Pure numpy, no I/O. Input is the temporal model's ``cls_attention`` for one video, ``(2, heads, 1 + F*P)``
float: index 0 = spatial attention, 1 = temporal attention, key 0 = CLS, key ``1 + s*P + p`` = patch p of slot s.

The computation (``slot_scores``), fixed relative to the original ``aggregate_attentions`` (§3.8 of
``shared/docs/mintime-original.md``):

1. Drop the CLS key; reshape the ``F*P`` keys to ``(F, P)``.
2. Max over heads, per key (the original took the max over heads *and over the batch*, mixing videos).
3. Mean over each slot's P tokens -> raw ``space`` and ``time`` scores ``(F,)``. The original split the 785 keys
   into 16 chunks with ``np.array_split``; 785 = 50 + 15*49, so its chunk 0 is CLS + slot 0 (the CLS key's
   attention, usually the largest single weight, is credited to slot 0) while chunks 1..15 are slots 1..15.
4. Raw ``combined`` = **average** of raw space and time (the README's description; the original summed).
5. Normalisation to a distribution over the unmasked slots. Default ``"sum"``: divide by the sum over unmasked
   slots, so each score is the slot's share of the attention paid to faces (interpretable, and independent of
   sum-vs-average). Option ``"softmax"``: the original's ``softmax(scale * raw)`` with ``scale = 50000``, which
   is close to an arg-max at typical attention values (1/785 * 50000 ~ 64). Masked (dummy) slots get 0.

Per identity (``identity_scores``): the sum of the identity's slots' combined scores (the original used
off-by-one slot ranges: identity 0 lost its last slot to identity 1, the last slot was never counted, and for 3+
identities the ranges were not cumulative).

Per-identity fake score (``identity_fake_scores``): ``p * a_k / max(a)``; see that function. It is an
attribution of the video-level probability, not a calibrated per-identity probability.

:func:`original_aggregate_attentions` reproduces the original computation exactly, bugs included, for tests.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = [
    "NORMALISATIONS",
    "ORIGINAL_SCALE",
    "slot_scores",
    "identity_scores",
    "identity_fake_scores",
    "Explanation",
    "LABEL_NO_FACE",
    "RESULT_FORMAT",
    "sigmoid",
    "explain_video",
    "render_result",
    "model_banner",
    "human_summary",
    "original_frames_per_identity",
    "original_aggregate_attentions",
]

logger = logging.getLogger(__name__)

#: "sum": share of the attention over unmasked slots; "softmax": softmax(scale * raw) (the original's).
NORMALISATIONS = ("sum", "softmax")
#: The original's softmax scale factor.
ORIGINAL_SCALE = 50000.0
#: The ``format`` field of a result object.
RESULT_FORMAT = "mintime.result.v1"


def _softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of a 1-D array (``-inf`` entries get 0)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - np.max(z))
    return e / e.sum()


def _normalise(raw: np.ndarray, valid: np.ndarray, normalisation: str, scale: float) -> np.ndarray:
    """Distribution over the valid slots of a raw (F,) score; invalid slots get 0."""
    out = np.zeros_like(raw, dtype=np.float64)
    if normalisation == "softmax":
        out[valid] = _softmax(scale * raw[valid])
        return out
    total = float(raw[valid].sum())
    if total > 0 and np.isfinite(total):
        out[valid] = raw[valid] / total
    else:  # no attention on any face: nothing to tell the slots apart
        out[valid] = 1.0 / int(valid.sum())
    return out


def slot_scores(
    cls_attention: np.ndarray,
    *,
    num_slots: int = 16,
    num_patches: int = 49,
    mask: np.ndarray | None = None,
    normalisation: str = "sum",
    scale: float = ORIGINAL_SCALE,
) -> dict[str, np.ndarray]:
    """Per-slot attention scores of one video.

    Args:
        cls_attention: (2, heads, 1 + F*P) float (or (1, 2, heads, 1 + F*P)); [0] = spatial, [1] = temporal
            CLS attention rows of the last layer, key 0 = CLS.
        num_slots: F.
        num_patches: P.
        mask: (F,) bool, False on slots to ignore (dummies); None = all slots.
        normalisation: "sum" (default) or "softmax" (the original's ``softmax(scale * raw)``).
        scale: softmax scale factor (only for ``"softmax"``).

    Returns:
        Dict of (F,) float64 arrays: ``space``, ``time``, ``combined`` (distributions over the unmasked slots,
        0 on masked slots) and ``space_raw``, ``time_raw``, ``combined_raw`` (mean over the slot's tokens of the
        max-over-heads attention; combined = average of space and time).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    att = np.asarray(cls_attention, dtype=np.float64)
    if att.ndim == 4 and att.shape[0] == 1:
        att = att[0]
    f, p = int(num_slots), int(num_patches)
    if att.ndim != 3 or att.shape[0] != 2 or att.shape[2] != 1 + f * p:
        raise ValueError(
            f"cls_attention must be (2, heads, {1 + f * p}), got {tuple(np.shape(cls_attention))}"
        )
    valid = np.ones(f, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
    if valid.shape != (f,):
        raise ValueError(f"mask must be ({f},), got {valid.shape}")
    if not valid.any():
        raise ValueError("every slot is masked")

    tokens = att[:, :, 1:].reshape(2, att.shape[1], f, p)  # drop CLS key -> (2, heads, F, P)
    per_slot = tokens.max(axis=1).mean(axis=-1)  # max over heads, mean over the slot's tokens -> (2, F)
    raw = {"space": per_slot[0], "time": per_slot[1], "combined": per_slot.mean(axis=0)}
    out: dict[str, np.ndarray] = {}
    for name, values in raw.items():
        out[name] = _normalise(values, valid, normalisation, float(scale))
    for name, values in raw.items():
        out[f"{name}_raw"] = values.copy()
    return out


def identity_scores(per_slot: np.ndarray, slot_identity: np.ndarray, num_identities: int) -> np.ndarray:
    """Sum of per-slot scores over each identity's slots.

    Args:
        per_slot: (F,) float, e.g. ``slot_scores(...)["combined"]``.
        slot_identity: (F,) int, identity index of each slot (0..n-1).
        num_identities: n.

    Returns:
        (n,) float64; sums to the sum of ``per_slot``.
    """
    scores = np.asarray(per_slot, dtype=np.float64).reshape(-1)
    owner = np.asarray(slot_identity, dtype=np.int64).reshape(-1)
    if scores.shape != owner.shape:
        raise ValueError(f"per_slot {scores.shape} and slot_identity {owner.shape} differ in shape")
    n = int(num_identities)
    if owner.size and (owner.min() < 0 or owner.max() >= n):
        raise ValueError(f"slot_identity must be in 0..{n - 1}, got {np.unique(owner).tolist()}")
    return np.bincount(owner, weights=scores, minlength=n).astype(np.float64)


def identity_fake_scores(probability: float, identity_attention: np.ndarray) -> np.ndarray:
    """Per-identity fake score reported by ``mintime predict``: ``p * a_k / max_j a_j``.

    The video-level probability p is attributed to the identities in proportion to the attention the classifier
    paid them, scaled so that the most-attended identity carries p itself: no identity scores above the video,
    a pristine verdict (p < 0.5) flags no identity, and equal attention gives every identity p (the model gives
    no evidence to tell them apart). This is an *attribution*, not a calibrated per-identity probability. (The
    original coloured identity k's box with ``255 * a_k`` when p > 0.5 and called it fake if ``a_k > 0.5``.)

    Args:
        probability: p = sigmoid(logit) of the video, in [0, 1]; NaN (no face) gives NaN scores.
        identity_attention: (n,) float >= 0, e.g. :func:`identity_scores` of the combined slot scores.

    Returns:
        (n,) float64 in [0, p].
    """
    a = np.asarray(identity_attention, dtype=np.float64).reshape(-1)
    p = float(probability)
    if np.isnan(p):
        return np.full(a.shape, np.nan)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p}")
    if a.size == 0:
        return a.copy()
    if np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ValueError(f"identity_attention must be finite and >= 0, got {a.tolist()}")
    top = float(a.max())
    if top <= 0:
        return np.full(a.shape, p)
    return p * a / top


@dataclass(frozen=True)
class Explanation:
    """The verdict on one video and how it is shared among its identities.

    Attributes:
        logit: the model's logit (NaN when no face was found).
        probability: sigmoid(logit), P(fake) of the video (NaN when no face).
        label: ``"fake"`` (p above the model's threshold), ``"pristine"`` or ``"no_face"``.
        identity_attention: (K,) float64, share of the attention paid to each kept identity (sums to 1).
        identity_scores: (K,) float64, :func:`identity_fake_scores` (an attribution of p, not a probability).
        slot_attention: (F,) float64, combined per-slot share (0 on dummy slots).
        slot_identity: (F,) int64, kept-identity rank of each slot (-1 on dummy slots).
    """

    logit: float
    probability: float
    label: str
    identity_attention: np.ndarray
    identity_scores: np.ndarray
    slot_attention: np.ndarray
    slot_identity: np.ndarray

    def rank_of(self, slots: Sequence[int]) -> int:
        """The kept-identity rank of the identity that fills ``slots``."""
        return int(self.slot_identity[list(slots)].max())

    @property
    def found_face(self) -> bool:
        return self.label != LABEL_NO_FACE


LABEL_NO_FACE = "no_face"
#: Verdict threshold of weights that do not state one.
DEFAULT_THRESHOLD = 0.5


def model_threshold(model: dict[str, Any] | None) -> float:
    """The verdict threshold of a ``model`` block (:data:`DEFAULT_THRESHOLD` when it has none)."""
    value = (model or {}).get("threshold")
    return DEFAULT_THRESHOLD if value is None else float(value)


def sigmoid(x: float) -> float:
    """Numerically stable logistic function of one float."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def explain_video(
    logit: float,
    cls_attention: np.ndarray,
    slot_identity: np.ndarray,
    *,
    num_patches: int = 49,
    normalisation: str = "sum",
    scale: float = ORIGINAL_SCALE,
    threshold: float = DEFAULT_THRESHOLD,
) -> Explanation:
    """The one explanation of a video: probability, label, per-identity and per-slot scores.

    Called by ``mintime predict`` (:mod:`mintime.pipeline`), the Triton ``explain`` model and
    ``mintime evaluate``.

    Args:
        logit: the temporal model's logit.
        cls_attention: (2, heads, 1 + F*P) float (or with a leading batch of 1), see :func:`slot_scores`.
        slot_identity: (F,) int, kept-identity rank of each slot's face, -1 on dummy slots
            (``contract.SLOT_TENSORS``' ``face_slots_identity``); all -1 means no face was found.
        num_patches, normalisation, scale: see :func:`slot_scores`.
        threshold: the verdict threshold: ``"fake"`` when p > threshold (the model block's ``threshold``, chosen
            on real validation videos for a trained model; 0.5 when the weights say nothing).
    """
    owner = np.asarray(slot_identity, dtype=np.int64).reshape(-1)
    valid = owner >= 0
    if not valid.any():
        empty = np.zeros(0, np.float64)
        nan = float("nan")
        return Explanation(nan, nan, LABEL_NO_FACE, empty, empty, np.zeros(owner.shape, np.float64), owner)
    p = sigmoid(float(logit))
    slots = slot_scores(
        cls_attention,
        num_slots=owner.shape[0],
        num_patches=num_patches,
        mask=valid,
        normalisation=normalisation,
        scale=scale,
    )
    attention = identity_scores(slots["combined"], np.where(valid, owner, 0), int(owner.max()) + 1)
    return Explanation(
        logit=float(logit),
        probability=p,
        label="fake" if p > threshold else "pristine",
        identity_attention=attention,
        identity_scores=identity_fake_scores(p, attention),
        slot_attention=slots["combined"],
        slot_identity=owner,
    )


def render_result(
    face_json: dict[str, Any], explanation: Explanation, model: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The result JSON of ``mintime predict --json`` and of the server's ``RESULT_JSON``.

    Args:
        face_json: :meth:`mintime.faces.stage.FaceStageResult.to_json`.
        explanation: :func:`explain_video` of the same video.
        model: the ``model`` block (:attr:`mintime.networks.Networks.model`), None when unknown.

    Returns:
        ``format``, the face-stage fields, ``fake_probability`` (None when no face), ``logit``, ``label``,
        ``identities`` (each with ``attention`` and ``fake_score``; None when not kept) and ``slot_attention``.
    """
    result: dict[str, Any] = {"format": RESULT_FORMAT, **face_json}
    if model is not None:
        result["model"] = model
    if not explanation.found_face:
        result.update(fake_probability=None, label=LABEL_NO_FACE, logit=None)
        return result
    identities = []
    for ident in face_json["identities"]:
        ident = dict(ident)
        if ident["kept"]:
            rank = explanation.rank_of(ident["slots"])
            ident["attention"] = round(float(explanation.identity_attention[rank]), 6)
            ident["fake_score"] = round(float(explanation.identity_scores[rank]), 6)
        else:
            ident["attention"] = None
            ident["fake_score"] = None
        identities.append(ident)
    result.update(
        fake_probability=round(explanation.probability, 6),
        logit=round(explanation.logit, 6),
        label=explanation.label,
        identities=identities,
        slot_attention=[round(float(v), 6) for v in explanation.slot_attention],
    )
    return result


# --- human-readable output (``mintime predict`` and ``mintime-client`` print the same text) -------------------
def model_banner(model: dict[str, Any]) -> str:
    """The line naming the model that answers, and a ``note:`` line with its caveat when it has one."""
    weights = ", ".join(
        f"{PurePath(str(w.get('file', '?'))).name} sha256:{str(w.get('sha256', ''))[:12]}"
        for w in model.get("weights") or []
    )
    line = f"model: {model.get('name')} ({model.get('kind')}, {model.get('backbone')} backbone; {weights})"
    if model.get("caveat"):
        line += f"\nnote: {model['caveat']}"
    return line


def human_summary(name: str, result: dict[str, Any]) -> str:
    """The human-readable verdict of one result (identity scores are attributions, not probabilities)."""
    if result.get("status") == "error":
        return f"{name}: ERROR {result.get('error')}"
    lines = []
    if result.get("fake_probability") is None:
        lines.append(f"{name}: no face found ({result.get('reason', 'no identity')})")
    else:
        p = result["fake_probability"]
        threshold = model_threshold(result.get("model"))
        said = "" if threshold == DEFAULT_THRESHOLD else f"; this model says fake above {threshold:.4f}"
        lines.append(f"{name}: {str(result.get('label', '?')).upper()} (P(fake) = {p:.4f}{said})")
        for ident in result.get("identities") or []:
            if ident.get("fake_score") is None:
                continue
            frames = [f["frame"] for f in ident.get("faces") or []]
            where = f" in frames {frames[0]}..{frames[-1]}" if frames else ""
            lines.append(
                f"  identity {ident['id']}: fake score {ident['fake_score']:.4f} (attribution, not a probability), "
                f"attention {ident['attention']:.3f}, {ident.get('num_faces', '?')} faces{where}, "
                f"slots {ident.get('slots')}"
            )
    for warning in result.get("warnings") or []:
        lines.append(f"  warning: {name}: {warning}")
    if result.get("output_video"):
        line = f"  annotated video: {result['output_video']}"
        clip = result.get("clip") or {}
        if clip.get("scale") is not None and clip["scale"] < 1:
            line += (
                f" ({clip['width']}x{clip['height']}: the frames as analysed, scaled from "
                f"{clip['source_width']}x{clip['source_height']} by the decode budget, max_output_pixels)"
            )
        lines.append(line)
    return "\n".join(lines)


# --- the original, bugs included (for tests and comparisons) ------------------------------------------------------
def original_frames_per_identity(slots_per_identity: Sequence[int]) -> list[int]:
    """The ``frames_per_identity`` the original passed to ``aggregate_attentions``.

    From its ``tokens_per_identity`` / P: ``n_0`` for identity 0 and ``n_k + n_(k-1)`` for k > 0 (cumulative
    only for two identities).
    """
    n = [int(x) for x in slots_per_identity]
    return [n[0] if k == 0 else n[k] + n[k - 1] for k in range(len(n))]


def original_aggregate_attentions(
    attentions: Sequence[np.ndarray],
    heads: int,
    num_frames: int,
    frames_per_identity: Sequence[int],
    scale_factor: float = ORIGINAL_SCALE,
) -> tuple[list[np.ndarray], list[float]]:
    """The original ``aggregate_attentions`` (§3.8), bugs included.

    Args:
        attentions: [space, time], each (B*heads, 1, T) or (B*heads, T) float, the model's CLS rows.
        heads: number of heads.
        num_frames: F (number of chunks).
        frames_per_identity: see :func:`original_frames_per_identity`.
        scale_factor: softmax scale.

    Returns:
        ``([space, time, combined], identity_attentions)``: three (F,) float64 softmax outputs over the
        ``np.array_split`` chunks of the T keys (CLS in chunk 0; combined = space + time), and one float per
        identity summed over off-by-one slot ranges.
    """
    per_key = []
    for attention in attentions:
        a = np.asarray(attention, dtype=np.float64)
        a = a.reshape(-1, int(heads), a.shape[-1])  # (B, heads, T)
        per_key.append(a.max(axis=(0, 1)))  # max over batch AND heads, CLS key kept
    per_key.append(np.sum(np.asarray(per_key), axis=0))  # "combined" = sum
    aggregated = []
    for values in per_key:
        chunks = np.array_split(values, int(num_frames))
        aggregated.append(_softmax(np.array([c.mean() for c in chunks]) * float(scale_factor)))
    combined = aggregated[-1]
    identity_attentions = []
    for index, identity_frames in enumerate(frames_per_identity):
        if index == 0:
            identity_attentions.append(float(combined[: identity_frames - 1].sum()))
        else:
            previous = frames_per_identity[index - 1]
            identity_attentions.append(float(combined[previous - 1 : identity_frames - 1].sum()))
    return aggregated, identity_attentions
