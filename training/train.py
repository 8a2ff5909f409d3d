"""Training loop: ``train_one_epoch`` / ``evaluate`` / ``main(cfg)`` (the torchvision references split).

What it does (and how it differs from the original ``train.py``, §6):

* MINTIME or the frame baseline over the face-crop layout (:class:`training.dataset.FaceVideoDataset`).
* Class-weighted ``BCEWithLogitsLoss(pos_weight = n_real / n_fake)`` of the training list (as the original).
* SGD (momentum optional) / AdamW / Adam; ``cosine`` per iteration to ``lr * lr_min_ratio`` with optional warm-up
  (the original: timm CosineLRScheduler, no warm-up), ``step`` per epoch, or ``none``. Exactly ``epochs`` epochs
  (the original ran ``epochs + 1``).
* Frozen, partly (last k blocks) or fully trainable extractor. The extractor is in eval mode during validation
  (the original left it in train mode), and frozen parts stay in eval mode in training too.
* Frozen extractor: backbone features are cached once per face crop (:mod:`training.features`).
* Mixed precision on CUDA (bf16 autocast; fp16 + GradScaler where bf16 is unsupported).
* Early stopping and checkpoint selection on the **best** validation loss (the original compared with the
  previous epoch); ``best.pt`` (project checkpoint) on improvement, ``last.pt`` + ``last.state.pt`` (model,
  optimizer, scheduler, scaler, epoch, counters, history) every epoch for a full resume. The resolved config is
  saved as ``config.yaml``; tensorboard scalars go to ``tb/`` (the original's names).
* ``torchrun``: DistributedDataParallel + DistributedSampler (gloo on CPU, nccl on GPU); validation predictions
  are gathered from every rank, de-duplicated by index, and scored once. Only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from training.config import TrainConfig, save_config
from training.dataset import FaceVideoDataset, class_counts, load_rows
from training.evaluate import compute_metrics
from training.features import FeatureCache, weights_tag
from training.modeling import VideoClassifier, build_model, save_model

__all__ = [
    "DistInfo",
    "setup_distributed",
    "build_optimizer",
    "build_scheduler",
    "train_one_epoch",
    "evaluate",
    "main",
    "move_batch",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# distributed helpers
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    """Process-group facts of this process (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _resolve_device(cfg: TrainConfig, info: DistInfo) -> torch.device:
    if cfg.device == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        name = cfg.device
    if name == "cuda" and info.enabled:
        name = f"cuda:{info.local_rank}"
    dev = torch.device(name)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def move_batch(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of a collated batch to ``device`` (non-blocking)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------------------------
# optimisation
# ---------------------------------------------------------------------------------------------------------------
def build_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (``momentum``), AdamW or Adam over ``params`` with ``lr`` and ``weight_decay``."""
    if not params:
        raise ValueError("no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def cosine_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """The LR schedule and whether it steps per iteration (True) or per epoch (False)."""
    if cfg.scheduler == "cosine":
        total = cfg.epochs * steps_per_epoch
        warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_factor(s, total, warmup, cfg.lr_min_ratio)
        )
        return sched, True
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma), False
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0), False


def _autocast(device: torch.device, enabled: bool):
    if not enabled or device.type != "cuda":
        return torch.autocast(device_type="cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------
# one epoch / evaluation
# ---------------------------------------------------------------------------------------------------------------
def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    *,
    epoch: int,
    amp: bool = False,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    log_every: int = 50,
    info: DistInfo | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; ``scheduler`` (if given) is stepped after every optimizer step.

    Returns:
        ``loss`` (sample-weighted mean over all ranks), ``accuracy`` (threshold 0.5), ``lr`` (at the end),
        ``samples``, ``seconds``.
    """
    info = info or DistInfo()
    model.train()
    t0 = time.perf_counter()
    stats = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    for it, batch in enumerate(loader):
        batch = move_batch(batch, device)
        labels = batch["label"][:, None]
        with _autocast(device, amp):
            logits = model(batch)
        loss = loss_fn(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"]], grad_clip
                )
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"]], grad_clip
                )
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = labels.shape[0]
        with torch.no_grad():
            stats += torch.tensor(
                [loss.item() * n, ((logits.float() > 0).float() == labels).sum().item(), n],
                dtype=torch.float64,
            )
        if info.main and log_every and (it + 1) % log_every == 0:
            logger.info(
                "epoch %d iter %d/%d loss %.4f lr %.3g",
                epoch,
                it + 1,
                len(loader),
                loss.item(),
                optimizer.param_groups[0]["lr"],
            )
    if info.enabled:
        stats = stats.to(device)
        dist.all_reduce(stats)
        stats = stats.cpu()
    loss_sum, correct, count = stats.tolist()
    return {
        "loss": loss_sum / max(count, 1),
        "accuracy": correct / max(count, 1),
        "lr": float(optimizer.param_groups[0]["lr"]),
        "samples": int(count),
        "seconds": time.perf_counter() - t0,
    }


@torch.no_grad()
def predict_loader(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    amp: bool = False,
    info: DistInfo | None = None,
    attention: bool = False,
) -> dict[str, np.ndarray]:
    """Logits of every item, gathered over ranks and de-duplicated by dataset index (sorted by index).

    Args:
        attention: also return ``cls_attention`` (N, 2, heads, 1 + F*P) float32 (MINTIME models only).

    Returns:
        ``index``, ``logit``, ``label``, ``method``, ``num_identities`` arrays (and ``cls_attention``).
    """
    info = info or DistInfo()
    model.eval()
    keys = ["index", "logit", "label", "method", "num_identities"] + (["cls_attention"] if attention else [])
    out: dict[str, list] = {k: [] for k in keys}
    for batch in loader:
        batch = move_batch(batch, device)
        with _autocast(device, amp):
            if attention:
                logits, attn = model(batch, return_attention=True)
                out["cls_attention"].append(attn.float().cpu().numpy())
            else:
                logits = model(batch)
        out["logit"].append(logits.float()[:, 0].cpu().numpy())
        for k in ("index", "label", "method", "num_identities"):
            out[k].append(batch[k].cpu().numpy())
    local = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}
    if info.enabled:
        gathered: list[dict[str, np.ndarray]] = [None] * info.world_size  # type: ignore[list-item]
        dist.all_gather_object(gathered, local)
        local = {k: np.concatenate([g[k] for g in gathered]) for k in local}
    _, first = np.unique(local["index"], return_index=True)
    return {k: v[first] for k, v in local.items()}


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    pos_weight: float = 1.0,
    amp: bool = False,
    info: DistInfo | None = None,
) -> dict[str, Any]:
    """Validation: the class-weighted loss (the training loss) and the metrics of
    :func:`training.evaluate.compute_metrics` over the gathered, de-duplicated predictions."""
    pred = predict_loader(model, loader, device, amp=amp, info=info)
    logits = torch.from_numpy(pred["logit"].astype(np.float32))[:, None]
    labels = torch.from_numpy(pred["label"].astype(np.float32))[:, None]
    weight = torch.tensor([pos_weight], dtype=torch.float32)
    loss = (
        float(nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight).item())
        if len(labels)
        else float("nan")
    )
    metrics = compute_metrics(pred["label"], pred["logit"], logits=True)
    metrics["loss"] = loss
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------
def _unwrap(model: nn.Module) -> VideoClassifier:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model  # type: ignore[return-value]


def _trainable_state(model: VideoClassifier) -> dict[str, dict[str, torch.Tensor]]:
    state = {"head": model.head.state_dict()}
    if model.backbone_trainable:
        state["backbone"] = model.backbone.state_dict()
    return state


def _resume_path(cfg: TrainConfig) -> Path | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        p = Path(cfg.output_dir) / "last.state.pt"
        return p if p.is_file() else None
    p = Path(cfg.resume)
    if not p.is_file():
        raise FileNotFoundError(f"resume state not found: {p}")
    return p


def _save_state(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _make_datasets(cfg: TrainConfig, info: DistInfo, device: torch.device, model: VideoClassifier):
    train_rows = load_rows(
        cfg.train_list, cfg.data_path, methods=cfg.methods, max_videos=cfg.max_videos, seed=cfg.seed
    )
    val_rows = load_rows(
        cfg.val_list, cfg.data_path, methods=cfg.methods, max_videos=cfg.max_videos, seed=cfg.seed
    )
    if not train_rows or not val_rows:
        raise ValueError(f"empty training ({len(train_rows)}) or validation ({len(val_rows)}) list")
    cache = None
    if cfg.use_cache:
        tag = weights_tag(
            cfg.backbone, pretrained=cfg.pretrained, extractor_weights=cfg.extractor_weights, seed=cfg.seed
        )
        cache = FeatureCache(cfg.cache_dir or Path(cfg.output_dir) / "feature_cache", tag)
        root = Path(cfg.data_path)
        videos = sorted({r.path for r in train_rows + val_rows})
        cache.build(
            [(v, root / v) for v in videos],
            model.backbone,
            device=str(device),
            rank=info.rank,
            world_size=info.world_size,
        )
        _barrier(info)
    common = dict(
        num_slots=cfg.num_slots,
        max_identities=cfg.max_identities,
        ordering=cfg.identities_ordering,
        mask_regime=cfg.mask_regime,
        features=cache,
        seed=cfg.seed,
    )
    train_ds = FaceVideoDataset(
        train_rows, cfg.data_path, augmentation=cfg.augmentation, sampling="alternate", **common
    )
    val_ds = FaceVideoDataset(val_rows, cfg.data_path, augmentation="none", sampling="odd", **common)
    return train_ds, val_ds


def main(cfg: TrainConfig) -> dict[str, Any]:
    """Run a whole training (or resume one); returns the run summary (also written to ``summary.json``).

    Returns:
        ``best_epoch``, ``best_val_loss``, ``epochs_completed``, ``stopped_early``, ``checkpoint`` (best.pt),
        ``history`` (per-epoch train/val metrics), ``pos_weight``, ``train_videos``, ``val_videos``.
    """
    cfg.validate()
    threads_before = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _main(cfg)
    finally:
        torch.set_num_threads(threads_before)


def _main(cfg: TrainConfig) -> dict[str, Any]:
    info = setup_distributed(cfg.device)
    device = _resolve_device(cfg, info)
    _seed_all(cfg.seed)
    out = Path(cfg.output_dir)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    _barrier(info)

    model = build_model(cfg).to(device)
    train_ds, val_ds = _make_datasets(cfg, info, device, model)
    n_real, n_fake = class_counts(train_ds.rows)
    pos_weight = cfg.pos_weight if cfg.pos_weight is not None else (n_real / n_fake if n_fake else 1.0)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight], dtype=torch.float32)).to(device)
    if info.main:
        logger.info(
            "train %d videos (%d real / %d fake, pos_weight %.4f), val %d, model %s, cache %s, world %d",
            len(train_ds),
            n_real,
            n_fake,
            pos_weight,
            len(val_ds),
            cfg.model,
            cfg.use_cache,
            info.world_size,
        )

    train_sampler = DistributedSampler(train_ds, shuffle=True, seed=cfg.seed) if info.enabled else None
    val_sampler = DistributedSampler(val_ds, shuffle=False) if info.enabled else None
    g = torch.Generator()
    g.manual_seed(cfg.seed)
    loader_kw = dict(
        num_workers=cfg.workers, pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0
    )
    train_loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        shuffle=train_sampler is None,
        sampler=train_sampler,
        generator=g,
        drop_last=False,
        **loader_kw,
    )
    val_loader = DataLoader(
        val_ds, batch_size=cfg.val_batch_size, shuffle=False, sampler=val_sampler, **loader_kw
    )

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg, params)
    scheduler, per_iter = build_scheduler(cfg, optimizer, len(train_loader))
    amp = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
    use_scaler = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    start_epoch, best_loss, best_epoch, bad_epochs, history = 0, math.inf, -1, 0, []
    resume = _resume_path(cfg)
    if resume is not None:
        state = torch.load(resume, map_location="cpu", weights_only=True)
        if state["model_kind"] != cfg.model:
            raise ValueError(f"{resume} holds a {state['model_kind']} run, the config asks for {cfg.model}")
        model.head.load_state_dict(state["model"]["head"])
        if "backbone" in state["model"]:
            model.backbone.load_state_dict(state["model"]["backbone"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"]) + 1
        best_loss, best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        bad_epochs = int(state["bad_epochs"])
        history = json.loads(state["history"])
        torch.set_rng_state(state["torch_rng"])
        if info.main:
            logger.info(
                "resumed from %s at epoch %d (best val loss %.4f at epoch %d)",
                resume,
                start_epoch,
                best_loss,
                best_epoch,
            )

    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False
        )

    writer = None
    if info.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(out / "tb"))

    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        if bad_epochs >= cfg.patience:
            stopped_early = True
            break
        g.manual_seed(cfg.seed + epoch)  # the same shuffle for an epoch, resumed or not
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        tr = train_one_epoch(
            train_model,
            train_loader,
            loss_fn,
            optimizer,
            scheduler if per_iter else None,
            device,
            epoch=epoch,
            amp=amp,
            scaler=scaler,
            grad_clip=cfg.grad_clip,
            log_every=cfg.log_every,
            info=info,
        )
        if not per_iter:
            scheduler.step()
        va = evaluate(model, val_loader, device, pos_weight=pos_weight, amp=amp, info=info)
        improved = va["loss"] < best_loss
        if improved:
            best_loss, best_epoch, bad_epochs = va["loss"], epoch, 0
        else:
            bad_epochs += 1
        record = {
            "epoch": epoch,
            "train": tr,
            "val": {k: va[k] for k in ("n", "loss", "accuracy", "auc", "eer", "f1")},
        }
        history.append(record)
        if info.main:
            logger.info(
                "epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f auc %s%s (%.0f s)",
                epoch,
                tr["loss"],
                tr["accuracy"],
                va["loss"],
                va["accuracy"],
                "n/a" if va["auc"] is None else f"{va['auc']:.3f}",
                " *" if improved else "",
                tr["seconds"],
            )
            assert writer is not None
            writer.add_scalar("Training/Loss", tr["loss"], epoch)
            writer.add_scalar("Training/Accuracy", tr["accuracy"], epoch)
            writer.add_scalar("Training/Learning_Rate", tr["lr"], epoch)
            writer.add_scalar("Validation/Loss", va["loss"], epoch)
            writer.add_scalar("Validation/Accuracy", va["accuracy"], epoch)
            if va["auc"] is not None:
                writer.add_scalar("Validation/AUC", va["auc"], epoch)
            writer.flush()
            meta = {
                "epoch": epoch,
                "validation": record["val"],
                "train_list": cfg.train_list,
                "val_list": cfg.val_list,
            }
            unwrapped = _unwrap(train_model)
            if improved:
                save_model(out / "best.pt", unwrapped, cfg, meta)
            save_model(out / "last.pt", unwrapped, cfg, meta)
            _save_state(
                out / "last.state.pt",
                {
                    "model_kind": cfg.model,
                    "epoch": epoch,
                    "model": _trainable_state(unwrapped),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "best_val_loss": best_loss,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "history": json.dumps(history),
                    "torch_rng": torch.get_rng_state(),
                    "config": json.dumps(cfg.to_dict()),
                },
            )
        _barrier(info)

    summary = {
        "best_epoch": best_epoch,
        "best_val_loss": best_loss,
        "epochs_completed": len(history),
        "last_epoch": history[-1]["epoch"] if history else -1,
        "stopped_early": stopped_early,
        "checkpoint": str(out / "best.pt"),
        "history": history,
        "pos_weight": pos_weight,
        "train_videos": len(train_ds),
        "val_videos": len(val_ds),
        "world_size": info.world_size,
    }
    if info.main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if writer is not None:
            writer.close()
    _barrier(info)
    return summary
