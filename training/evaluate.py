"""``mintime evaluate``: a trained checkpoint × a list → metrics, per-video predictions and a ROC plot.

The metrics themselves are :mod:`training.metrics` (shared with validation during training). ``mintime evaluate``
reports them overall, for the multi-identity subset (videos with two or more identity folders, the original's
``--only_multiidentity``), per method id (accuracy as the original's per-class errors; plus the AUC of that
method's videos against the pristine ones, overall and within the multi-identity subset), and for MINTIME the
identity attribution (:func:`identity_attribution`).

Outputs in ``--out``: ``metrics.json``, ``predictions.csv`` (one row per video: path, label, method,
identities, logit, probability, prediction) and ``roc.png`` (matplotlib, Agg backend).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from training.metrics import report
from training.metrics import sigmoid as _sigmoid

__all__ = [
    "write_predictions_csv",
    "plot_roc",
    "evaluate_checkpoint",
    "format_report",
    "identity_attribution",
]

logger = logging.getLogger(__name__)


def identity_attribution(dataset: Any, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    """How often MINTIME's attention points at the manipulated person.

    Over the videos whose ``boxes.json`` carries per-identity labels (the synthetic benchmark) and that have two or
    more kept identities of which exactly one is manipulated: the share where the identity with the largest
    attention (:func:`mintime.explain.explain_video`, the explanation ``mintime predict`` gives) is the manipulated one.

    Args:
        dataset: the :class:`training.dataset.FaceVideoDataset` that produced ``pred``.
        pred: :func:`training.train.predict_loader` output with ``cls_attention``.

    Returns:
        ``videos`` (how many qualified), ``top_identity_is_manipulated`` (share, None when no video qualified),
        ``mean_attention_on_manipulated``.
    """
    from mintime.explain import explain_video

    hits, shares = [], []
    for j, idx in enumerate(pred["index"].tolist()):
        vf = dataset.scan(int(idx))
        if vf.labels is None or len(vf.labels) != len(vf.identities):
            continue
        labels = [lab for ident, lab in zip(vf.identities, vf.labels, strict=True) if ident]
        plan = dataset.plan(int(idx))
        kept = [labels[k] for k in plan.identity_order]
        if len(kept) < 2 or sum(kept) != 1:
            continue
        owner = np.where(plan.is_dummy, -1, plan.slot_identity)
        per_identity = explain_video(
            float(pred["logit"][j]), pred["cls_attention"][j], owner
        ).identity_attention
        target = kept.index(1)
        hits.append(int(np.argmax(per_identity)) == target)
        shares.append(float(per_identity[target] / max(per_identity.sum(), 1e-12)))
    return {
        "videos": len(hits),
        "top_identity_is_manipulated": float(np.mean(hits)) if hits else None,
        "mean_attention_on_manipulated": float(np.mean(shares)) if shares else None,
    }


def write_predictions_csv(path: str | Path, paths: list[str], pred: dict[str, np.ndarray]) -> Path:
    """One row per video: path, label, method, num_identities, logit, probability, predicted label."""
    path = Path(path)
    p = _sigmoid(pred["logit"])
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video", "label", "method", "num_identities", "logit", "probability", "predicted"])
        for i, name in enumerate(paths):
            w.writerow(
                [
                    name,
                    int(pred["label"][i]),
                    int(pred["method"][i]),
                    int(pred["num_identities"][i]),
                    f"{float(pred['logit'][i]):.6f}",
                    f"{float(p[i]):.6f}",
                    int(p[i] > 0.5),
                ]
            )
    return path


def plot_roc(
    path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "ROC"
) -> Path | None:
    """Plot ROC curves (name → (labels, P(fake))) into a PNG with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    drawn = 0
    for name, (y, p) in curves.items():
        y = np.asarray(y).astype(int)
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f}, n={len(y)})")
        drawn += 1
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set_xlabel("false positive rate (pristine called fake)")
    ax.set_ylabel("true positive rate (fake detected)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path if drawn else None


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "  n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def format_report(rep: dict[str, Any]) -> str:
    """A short human-readable table of a :func:`report`."""
    names = {int(k): v for k, v in rep.get("method_names", {}).items()}
    lines = []
    model = rep.get("model") or {}
    if model:
        from mintime.explain import model_banner

        lines.append(model_banner(model))
    for key, title in (
        ("overall", "all videos"),
        ("multi_identity", "multi-identity videos (>= 2 identities)"),
    ):
        m = rep[key]
        lines.append(
            f"{title}: n={m['n']} (real {m['n_real']}, fake {m['n_fake']})  AUC {_fmt(m['auc'])}  "
            f"acc {_fmt(m['accuracy'])}  F1 {_fmt(m['f1'])}  AP {_fmt(m['ap'])}  EER {_fmt(m['eer'])}"
        )
    for key, title in (
        ("per_method", "per method"),
        ("multi_identity_per_method", "per method, multi-identity videos"),
    ):
        if not rep.get(key):
            continue
        lines.append(f"{title}:")
        for method, e in rep[key].items():
            name = names.get(int(method), "")
            auc = f"  AUC vs pristine {_fmt(e['auc_vs_real'])}" if "auc_vs_real" in e else ""
            lines.append(f"  {method:>3} {name:<28} n={e['n']:<5} acc {_fmt(e['accuracy'])}{auc}")
    attr = rep.get("identity_attribution")
    if attr and attr.get("videos"):
        lines.append(
            f"identity attribution ({attr['videos']} videos with exactly one of >= 2 identities manipulated): "
            f"top-attention identity is the manipulated one in {100 * attr['top_identity_is_manipulated']:.1f} %, "
            f"mean attention share on it {attr['mean_attention_on_manipulated']:.3f}"
        )
    return "\n".join(lines)


def evaluate_checkpoint(
    checkpoint: str | Path,
    list_file: str | Path,
    data_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    device: str = "cpu",
    batch_size: int = 8,
    workers: int = 0,
    only_multi_identity: bool = False,
    methods: list[int] | None = None,
    max_videos: int = -1,
    cache_dir: str | Path | None = None,
    method_names: dict[int, str] | None = None,
    max_identities: int | None = None,
    mask_regime: str | None = None,
) -> dict[str, Any]:
    """Score every video of ``list_file`` with a trained checkpoint (MINTIME or baseline) and report.

    The slots are built as at inference (``odd`` sampling, no augmentation); slots, identities and mask regime
    default to the checkpoint's training config.

    Args:
        checkpoint: ``best.pt`` of ``mintime train`` (project or baseline format).
        list_file: ``<folder> <label> <method>`` rows.
        data_path: layout root.
        out_dir: where to write ``metrics.json``, ``predictions.csv``, ``roc.png`` (None = nothing written).
        device: torch device.
        batch_size / workers: DataLoader settings.
        only_multi_identity: keep only videos with two or more identity folders.
        methods / max_videos: list filters (see :func:`training.dataset.load_rows`).
        cache_dir: use (and fill) a feature cache there when the checkpoint's backbone is the stock pretrained one.
        method_names: names to print next to method ids.
        max_identities / mask_regime: override the checkpoint's training values.

    Returns:
        The :func:`report` dict, plus ``checkpoint``, ``list``, ``model`` and ``outputs``.
    """
    import torch
    from torch.utils.data import DataLoader

    from training.modeling import load_model
    from training.train import predict_loader

    loaded = load_model(checkpoint)
    ds = _scoring_dataset(
        loaded,
        list_file,
        data_path,
        device=device,
        only_multi_identity=only_multi_identity,
        methods=methods,
        max_videos=max_videos,
        cache_dir=cache_dir,
        max_identities=max_identities,
        mask_regime=mask_regime,
    )
    dev = torch.device(device)
    model = loaded.model.to(dev).eval()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    pred = predict_loader(model, loader, dev, attention=loaded.kind == "mintime")
    rep = report(pred, method_names=method_names)
    if loaded.kind == "mintime":
        rep["identity_attribution"] = identity_attribution(ds, pred)
    rep.update(
        checkpoint=str(checkpoint),
        list=str(list_file),
        kind=loaded.kind,
        backbone=loaded.backbone,
        model=loaded.info,
    )
    if out_dir is not None:
        rep["outputs"] = _write_outputs(
            Path(out_dir), ds, pred, rep, title=f"{loaded.kind} on {Path(list_file).name}"
        )
    return rep


def _scoring_dataset(
    loaded: Any,
    list_file: str | Path,
    data_path: str | Path,
    *,
    device: str,
    only_multi_identity: bool,
    methods: list[int] | None,
    max_videos: int,
    cache_dir: str | Path | None,
    max_identities: int | None,
    mask_regime: str | None,
) -> Any:
    """The :class:`training.dataset.FaceVideoDataset` of a list, built as at inference with the checkpoint's
    training settings (feature cache filled first when one is asked for and the backbone is the stock one).

    Raises:
        ValueError: no video of the list has faces under ``data_path``.
    """
    from training.dataset import FaceVideoDataset, load_rows
    from training.features import FeatureCache, weights_tag

    tcfg = loaded.metadata.get("training_config", {})
    rows = load_rows(list_file, data_path, methods=methods, max_videos=max_videos)
    if not rows:
        raise ValueError(
            f"no video of {list_file} has face crops under {data_path} (run `mintime preprocess`?)"
        )
    cache = None
    if cache_dir is not None and loaded.backbone_stock:
        cache = FeatureCache(
            cache_dir, weights_tag(loaded.backbone, pretrained=True, extractor_weights=None, seed=0)
        )
        root = Path(data_path)
        cache.build([(r.path, root / r.path) for r in rows], loaded.model.backbone, device=device)
    ds = FaceVideoDataset(
        rows,
        data_path,
        num_slots=int(tcfg.get("num_slots", 16)),
        max_identities=int(max_identities or tcfg.get("max_identities", 2)),
        ordering=tcfg.get("identities_ordering", "size")
        if tcfg.get("identities_ordering") != "random"
        else "size",
        mask_regime=mask_regime or tcfg.get("mask_regime", "correct"),
        augmentation="none",
        sampling="odd",
        features=cache,
    )
    if only_multi_identity:
        keep = [i for i in range(len(ds)) if sum(1 for ident in ds.scan(i).identities if ident) >= 2]
        ds.rows = [ds.rows[i] for i in keep]
        ds._scans = {}
    return ds


def _write_outputs(
    out: Path, ds: Any, pred: dict[str, np.ndarray], rep: dict[str, Any], *, title: str
) -> dict[str, str]:
    """``predictions.csv``, ``roc.png`` (all videos and the multi-identity subset) and ``metrics.json``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [ds.rows[int(i)].path for i in pred["index"]]
    outputs = {"predictions": str(write_predictions_csv(out / "predictions.csv", paths, pred))}
    p = _sigmoid(pred["logit"])
    multi = pred["num_identities"] >= 2
    curves = {"all videos": (pred["label"], p)}
    if multi.any():
        curves["multi-identity"] = (pred["label"][multi], p[multi])
    roc = plot_roc(out / "roc.png", curves, title=title)
    if roc is not None:
        outputs["roc"] = str(roc)
    outputs["metrics"] = str(out / "metrics.json")
    (out / "metrics.json").write_text(json.dumps({**rep, "outputs": outputs}, indent=2))
    return outputs
