"""Binary detection metrics (scikit-learn): the numbers both training (validation) and ``mintime evaluate`` report.

:func:`compute_metrics` gives accuracy at 0.5, balanced accuracy, AUC, F1, average precision, equal error rate
(with its threshold) and unweighted BCE; :func:`method_metrics` the per-method accuracy and AUC against the
pristine videos; :func:`report` both, overall and for the multi-identity subset, from a prediction table.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["sigmoid", "equal_error_rate", "compute_metrics", "method_metrics", "report"]

logger = logging.getLogger(__name__)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    x = np.asarray(x, np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Equal error rate: where the false-positive rate equals the false-negative rate on the ROC curve.

    Linear interpolation between the two ROC points that bracket ``FNR - FPR = 0``.

    Args:
        labels: (N,) 0/1 (1 = fake = positive).
        scores: (N,) higher = more likely fake.

    Returns:
        (eer in [0, 1], threshold at the crossing; +inf/-inf at the ends).

    Raises:
        ValueError: only one class present.
    """
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        raise ValueError("EER needs both classes")
    fpr, tpr, thr = roc_curve(labels, np.asarray(scores, np.float64))
    fnr = 1.0 - tpr
    d = fnr - fpr  # starts at 1, decreases to -1
    i = int(np.argmax(d <= 0))
    if i == 0:
        return float(fpr[0]), float(thr[0])
    t = d[i - 1] / (d[i - 1] - d[i])
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    lo, hi = thr[i - 1], thr[i]
    threshold = hi if not np.isfinite(lo) else lo + t * (hi - lo)
    return float(eer), float(threshold)


def compute_metrics(
    labels: np.ndarray, scores: np.ndarray, *, logits: bool = False, threshold: float = 0.5
) -> dict[str, Any]:
    """Binary detection metrics.

    Args:
        labels: (N,) 0/1, 1 = fake.
        scores: (N,) P(fake), or logits when ``logits`` is True.
        logits: ``scores`` are logits (sigmoid applied here).
        threshold: decision threshold on P(fake).

    Returns:
        ``n``, ``n_real``, ``n_fake``, ``accuracy``, ``balanced_accuracy``, ``auc``, ``ap``, ``f1``, ``eer``,
        ``eer_threshold`` (P(fake)), ``bce`` (unweighted). AUC, AP, EER are None with a single class.
    """
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    y = np.asarray(labels).astype(int).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    p = sigmoid(s) if logits else s
    n = len(y)
    out: dict[str, Any] = {"n": n, "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum())}
    if n == 0:
        return {
            **out,
            **dict.fromkeys(
                ("accuracy", "balanced_accuracy", "auc", "ap", "f1", "eer", "eer_threshold", "bce")
            ),
        }
    pred = (p > threshold).astype(int)
    out["accuracy"] = float((pred == y).mean())
    recalls = [float((pred[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
    out["balanced_accuracy"] = float(np.mean(recalls))
    out["f1"] = float(f1_score(y, pred, zero_division=0))
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    out["bce"] = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    if len(np.unique(y)) == 2:
        out["auc"] = float(roc_auc_score(y, p))
        out["ap"] = float(average_precision_score(y, p))
        out["eer"], out["eer_threshold"] = equal_error_rate(y, p)
    else:
        out["auc"] = out["ap"] = out["eer"] = out["eer_threshold"] = None
    return out


def method_metrics(labels: np.ndarray, probs: np.ndarray, methods: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per method id: ``n``, ``accuracy`` (1 - the original's per-class error rate) and, for manipulated
    methods, ``auc_vs_real`` (that method's videos against all pristine videos of the same set)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels).astype(int)
    p = np.asarray(probs, np.float64)
    m = np.asarray(methods).astype(int)
    real = y == 0
    out: dict[str, dict[str, Any]] = {}
    for method in sorted(np.unique(m).tolist()):
        sel = m == method
        acc = float(((p[sel] > 0.5).astype(int) == y[sel]).mean())
        entry: dict[str, Any] = {
            "n": int(sel.sum()),
            "accuracy": acc,
            "errors": int(round((1 - acc) * sel.sum())),
        }
        fake_sel = sel & (y == 1)
        if fake_sel.any() and real.any():
            both = fake_sel | real
            entry["auc_vs_real"] = float(roc_auc_score(y[both], p[both]))
        out[str(method)] = entry
    return out


def report(pred: dict[str, np.ndarray], *, method_names: dict[int, str] | None = None) -> dict[str, Any]:
    """Full metrics of a prediction table (``label``, ``logit``, ``method``, ``num_identities`` arrays)."""
    y, logit = pred["label"], pred["logit"]
    p = sigmoid(logit)
    multi = np.asarray(pred["num_identities"]) >= 2
    out: dict[str, Any] = {
        "overall": compute_metrics(y, p),
        "per_method": method_metrics(y, p, pred["method"]),
        "multi_identity": compute_metrics(y[multi], p[multi]),
        "multi_identity_per_method": method_metrics(y[multi], p[multi], pred["method"][multi])
        if multi.any()
        else {},
    }
    if method_names:
        out["method_names"] = {str(k): v for k, v in method_names.items()}
    return out
