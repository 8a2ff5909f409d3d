"""Score labelled videos end to end with one or more models: ``mintime evaluate --videos DIR``.

The folder holds ``labels.tsv`` (``path``, ``label`` real/fake, ``pair``; a header line is optional). Every video
goes through decode and the face stage once (the stage does not depend on the model), then through each model's
networks, exactly as ``mintime predict`` runs them. Reported per model: video AUC with a 95 % bootstrap interval,
the share of (real, fake) pairs whose fake scores above its real, and how many real and fake videos its own
threshold calls fake.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "read_labels",
    "roc_auc",
    "bootstrap_auc",
    "pair_accuracy",
    "evaluate_videos",
    "format_video_report",
]

logger = logging.getLogger(__name__)


def read_labels(folder: str | Path) -> list[tuple[str, int, str]]:
    """``labels.tsv`` of a folder: (relative path, 1 fake / 0 real, pair name; the path when no pair column)."""
    path = Path(folder) / "labels.tsv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a video folder to evaluate needs labels.tsv (path, label, pair)"
        )
    rows = []
    for k, line in enumerate(path.read_text().splitlines()):
        cols = [c.strip() for c in line.split("\t")]
        if not line.strip() or (k == 0 and cols[0] == "path"):
            continue
        if len(cols) < 2 or cols[1].lower() not in ("real", "fake"):
            raise ValueError(f"{path}:{k + 1}: expected 'path<TAB>real|fake[<TAB>pair]', got {line!r}")
        rows.append(
            (cols[0], int(cols[1].lower() == "fake"), cols[2] if len(cols) > 2 and cols[2] else cols[0])
        )
    if not rows:
        raise ValueError(f"{path} lists no video")
    return rows


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN without both classes."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, np.float64)))


def bootstrap_auc(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, *, n: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the AUC (videos resampled within each class)."""
    rng = np.random.default_rng(seed)
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if not len(pos) or not len(neg):
        return float("nan"), float("nan")
    values = [
        roc_auc(labels[idx], scores[idx])
        for idx in (np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]) for _ in range(n))
    ]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def pair_accuracy(scores: dict[str, float], pairs: dict[str, tuple[str, str]]) -> float:
    """Share of (real, fake) pairs whose fake scores above its real (ties count half); NaN without a pair."""
    wins = [
        1.0 if scores[f] > scores[r] else 0.5 if scores[f] == scores[r] else 0.0
        for r, f in pairs.values()
        if r in scores and f in scores
    ]
    return float(np.mean(wins)) if wins else float("nan")


def pairs_of(rows: list[tuple[str, int, str]]) -> dict[str, tuple[str, str]]:
    """Pair name → (real path, fake path), for pairs that have both."""
    found: dict[str, dict[int, str]] = {}
    for rel, label, pair in rows:
        found.setdefault(pair, {})[label] = rel
    return {k: (v[0], v[1]) for k, v in found.items() if 0 in v and 1 in v}


def model_report(
    scores: dict[str, float], labels: dict[str, int], pairs: dict[str, tuple[str, str]], threshold: float
) -> dict[str, Any]:
    """The figures of one model on the scored videos (videos without a face are left out of the AUC)."""
    names = [n for n, s in scores.items() if not math.isnan(s)]
    y = np.array([labels[n] for n in names])
    s = np.array([scores[n] for n in names])
    lo, hi = bootstrap_auc(y, s)
    return {
        "videos": len(names),
        "no_face": len(scores) - len(names),
        "auc": roc_auc(y, s),
        "auc_95ci": [lo, hi],
        "pairs": len(pairs),
        "pairs_fake_above_real": pair_accuracy({n: scores[n] for n in names}, pairs),
        "threshold": float(threshold),
        "reals": int((y == 0).sum()),
        "reals_called_fake": int(((s > threshold) & (y == 0)).sum()),
        "fakes": int((y == 1).sum()),
        "fakes_called_fake": int(((s > threshold) & (y == 1)).sum()),
        "scores": {n: (None if math.isnan(v) else round(float(v), 6)) for n, v in scores.items()},
    }


def evaluate_videos(
    folder: str | Path,
    checkpoints: Sequence[str | Path | None],
    *,
    num_frames: int = 16,
    device: str = "cpu",
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Score every video of ``folder/labels.tsv`` with each checkpoint (None = the shipped default model).

    Returns:
        ``{"folder", "videos", "failed": {path: error}, "models": [{"model": block, **model_report}]}``.
    """
    from mintime.config import PipelineConfig
    from mintime.engines import TorchEngines
    from mintime.explain import explain_video
    from mintime.networks import load_networks
    from mintime.pipeline import Predictor
    from mintime.video import VideoDecodeError

    folder = Path(folder)
    rows = read_labels(folder)
    cfg = PipelineConfig(num_frames=num_frames, device=device)
    nets = [load_networks(checkpoint=c) for c in checkpoints]
    predictors = [
        Predictor(cfg, TorchEngines(n.backbone, n.head, device=device), model=n.model) for n in nets
    ]
    stage = predictors[0].stage
    for p in predictors[1:]:
        p.stage = stage
    scores: list[dict[str, float]] = [{} for _ in nets]
    failed: dict[str, str] = {}
    for k, (rel, _label, _pair) in enumerate(rows):
        if progress is not None:
            progress(k, len(rows), rel)
        try:
            faces = predictors[0].analyze(folder / rel)
        except (VideoDecodeError, FileNotFoundError) as err:
            failed[rel] = str(err)
            continue
        for m, pred in enumerate(predictors):
            if not faces.ok:
                scores[m][rel] = float("nan")
                continue
            logit, attention = pred.run_networks(faces)
            scores[m][rel] = explain_video(logit, attention, faces.tensors.slot_identity).probability
    labels = {rel: label for rel, label, _ in rows}
    pairs = pairs_of(rows)
    models = [
        {"model": n.model, **model_report(s, labels, pairs, float(n.metadata.get("threshold", 0.5)))}
        for n, s in zip(nets, scores, strict=True)
    ]
    return {"folder": str(folder), "videos": len(rows), "failed": failed, "models": models}


def format_video_report(rep: dict[str, Any]) -> str:
    """The human-readable table of :func:`evaluate_videos`."""
    lines = [
        f"{rep['videos']} videos in {rep['folder']}"
        + (f" ({len(rep['failed'])} failed)" if rep["failed"] else "")
    ]
    for m in rep["models"]:
        lo, hi = m["auc_95ci"]
        lines.append(
            f"{m['model']['name']}: AUC {m['auc']:.3f} [95% CI {lo:.3f}-{hi:.3f}], fake above its real in "
            f"{m['pairs_fake_above_real'] * 100:.0f}% of {m['pairs']} pairs; at threshold {m['threshold']:.3f}: "
            f"{m['reals_called_fake']}/{m['reals']} real and {m['fakes_called_fake']}/{m['fakes']} fake videos "
            f"called fake" + (f"; {m['no_face']} without a face" if m["no_face"] else "")
        )
    for rel, err in rep["failed"].items():
        lines.append(f"FAILED {rel}: {err}")
    return "\n".join(lines)
