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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from mintime.devices import check_device
from mintime.fileio import atomic_write
from training.config import TrainConfig, save_config
from training.dataset import FaceVideoDataset, class_counts, load_rows
from training.features import FeatureCache, weights_tag
from training.metrics import compute_metrics
from training.modeling import VideoClassifier, build_model, save_model
from training.progress import EpochReporter

__all__ = [
    "DistInfo",
    "setup_distributed",
    "build_optimizer",
    "build_scheduler",
    "train_one_epoch",
    "evaluate",
    "main",
    "move_batch",
    "predict_loader",
    "check_output_dir",
    "OutputDirError",
    "RUN_FILES",
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
    name = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    if name == "auto":
        name = "cpu"
    if name == "cuda" and info.enabled:
        name = f"cuda:{info.local_rank}"
    dev = check_device(name)
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
def _optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float | None,
) -> None:
    """Backward, optional global grad-norm clipping, optimizer step (through the GradScaler when enabled)."""
    optimizer.zero_grad(set_to_none=True)
    scaled = scaler is not None and scaler.is_enabled()
    (scaler.scale(loss) if scaled else loss).backward()  # type: ignore[union-attr]
    if grad_clip:
        if scaled:
            scaler.unscale_(optimizer)  # type: ignore[union-attr]
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    if scaled:
        scaler.step(optimizer)  # type: ignore[union-attr]
        scaler.update()  # type: ignore[union-attr]
    else:
        optimizer.step()


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
    progress: bool = False,
) -> dict[str, float]:
    """One pass over ``loader``; ``scheduler`` (if given) is stepped after every optimizer step.

    Args:
        progress: a per-iteration bar on stderr (rank 0, only when stderr is a terminal).

    Returns:
        ``loss`` (sample-weighted mean over all ranks), ``accuracy`` (threshold 0.5), ``lr`` (at the end),
        ``samples``, ``seconds``.
    """
    from tqdm import tqdm

    info = info or DistInfo()
    model.train()
    t0 = time.perf_counter()
    stats = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    # disable=None: tqdm shows the bar only on a terminal (no carriage-return noise in log files)
    bar = tqdm(
        total=len(loader), desc=f"epoch {epoch + 1}", unit="batch", leave=False,
        disable=None if progress and info.main else True,
    )  # fmt: skip
    for it, batch in enumerate(loader):
        batch = move_batch(batch, device)
        labels = batch["label"][:, None]
        with _autocast(device, amp):
            logits = model(batch)
        loss = loss_fn(logits.float(), labels)
        _optimizer_step(loss, optimizer, scaler, grad_clip)
        if scheduler is not None:
            scheduler.step()
        n = labels.shape[0]
        with torch.no_grad():
            stats += torch.tensor(
                [loss.item() * n, ((logits.float() > 0).float() == labels).sum().item(), n],
                dtype=torch.float64,
            )
        bar.update(1)
        if info.main and log_every and (it + 1) % log_every == 0:
            logger.info(
                "epoch %d iter %d/%d loss %.4f lr %.3g",
                epoch,
                it + 1,
                len(loader),
                loss.item(),
                optimizer.param_groups[0]["lr"],
            )
    bar.close()
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
    :func:`training.metrics.compute_metrics` over the gathered, de-duplicated predictions."""
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


#: What a training run writes into its output folder; ``overwrite`` removes exactly these (and stray temporary
#: files), never a feature cache or anything else a user put there.
RUN_FILES = ("config.yaml", "best.pt", "last.pt", "last.state.pt", "summary.json", "tb")
_CACHE_DIR_NAME = "feature_cache"


class OutputDirError(ValueError):
    """The output folder already holds a training run, and neither resume nor overwrite was asked for."""


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


def check_output_dir(cfg: TrainConfig, *, resuming: bool, overwrite: bool = False) -> list[Path]:
    """Protect an earlier run: a fresh run (not resuming) needs an output folder that is absent or empty.

    A feature cache (``feature_cache/``) does not count: it is keyed by the backbone weights and is reused.

    Args:
        cfg: the run's config (``output_dir``).
        resuming: this run continues from a ``*.state.pt`` (nothing is refused).
        overwrite: allow a fresh run over an earlier one (the caller removes :data:`RUN_FILES`).

    Returns:
        The entries that the fresh run replaces (empty when resuming or when the folder is empty).

    Raises:
        OutputDirError: the folder holds other entries and ``overwrite`` is False.
    """
    out = Path(cfg.output_dir)
    if resuming or not out.is_dir():
        return []
    found = sorted(p for p in out.iterdir() if p.name != _CACHE_DIR_NAME)
    if found and not overwrite:
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in found[:6])
        more = f" and {len(found) - 6} more" if len(found) > 6 else ""
        if cfg.resume == "auto":  # asked to resume, but the earlier run never finished an epoch
            raise OutputDirError(
                f"{out} holds no last.state.pt to resume from ({names}{more}): replace it with --overwrite, or "
                "choose another --output-dir"
            )
        raise OutputDirError(
            f"{out} is not empty ({names}{more}): continue that run with --resume auto, replace it with "
            f"--overwrite, or choose another --output-dir"
        )
    return found


def _remove_run_files(out: Path) -> None:
    """Delete what an earlier run wrote (:data:`RUN_FILES` and interrupted atomic writes)."""
    import shutil

    for name in RUN_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    for p in out.glob(".*.tmp"):
        p.unlink(missing_ok=True)


def _save_state(path: Path, payload: dict[str, Any]) -> None:
    with atomic_write(path) as fh:
        torch.save(payload, fh)


def _make_datasets(
    cfg: TrainConfig, info: DistInfo, device: torch.device, model: VideoClassifier, *, progress: bool = True
) -> tuple[FaceVideoDataset, FaceVideoDataset]:
    """Training and validation datasets; with a frozen backbone, its features cached first (every rank a share)."""
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
            progress=progress,
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


@dataclass
class _Counters:
    """What carries from epoch to epoch (and through ``last.state.pt``)."""

    start_epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Run:
    """The parts of one training run, built once by :func:`_setup`."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    out: Path
    model: VideoClassifier
    train_model: nn.Module  # ``model`` or its DDP wrapper
    train_ds: FaceVideoDataset
    val_ds: FaceVideoDataset
    train_loader: DataLoader
    val_loader: DataLoader
    train_sampler: DistributedSampler | None
    generator: torch.Generator
    loss_fn: nn.Module
    pos_weight: float
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_iter: bool
    amp: bool
    scaler: torch.amp.GradScaler


def _make_loaders(
    cfg: TrainConfig,
    info: DistInfo,
    device: torch.device,
    train_ds: FaceVideoDataset,
    val_ds: FaceVideoDataset,
) -> tuple[DataLoader, DataLoader, DistributedSampler | None, torch.Generator]:
    """Training loader (shuffled by a seeded generator, or a DistributedSampler), validation loader."""
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
    return train_loader, val_loader, train_sampler, g


def _setup(cfg: TrainConfig, info: DistInfo, device: torch.device, reporter: EpochReporter) -> _Run:
    """Model, datasets (feature cache filled), loaders, loss, optimizer, schedule and scaler of a run."""
    model = build_model(cfg).to(device)
    train_ds, val_ds = _make_datasets(cfg, info, device, model, progress=reporter.enabled)
    n_real, n_fake = class_counts(train_ds.rows)
    pos_weight = cfg.pos_weight if cfg.pos_weight is not None else (n_real / n_fake if n_fake else 1.0)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight], dtype=torch.float32)).to(device)
    if info.main:
        reporter.say(
            f"training {cfg.model} on {len(train_ds)} videos ({n_real} real / {n_fake} fake, pos_weight "
            f"{pos_weight:.3f}), validating on {len(val_ds)}; {cfg.epochs} epochs on {device}"
            f"{f' x {info.world_size} processes' if info.enabled else ''} -> {cfg.output_dir}"
        )
    train_loader, val_loader, train_sampler, g = _make_loaders(cfg, info, device, train_ds, val_ds)
    optimizer = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    scheduler, per_iter = build_scheduler(cfg, optimizer, len(train_loader))
    amp = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
    use_scaler = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False
        )
    return _Run(
        cfg=cfg,
        info=info,
        device=device,
        out=Path(cfg.output_dir),
        model=model,
        train_model=train_model,
        train_ds=train_ds,
        val_ds=val_ds,
        train_loader=train_loader,
        val_loader=val_loader,
        train_sampler=train_sampler,
        generator=g,
        loss_fn=loss_fn,
        pos_weight=pos_weight,
        optimizer=optimizer,
        scheduler=scheduler,
        per_iter=per_iter,
        amp=amp,
        scaler=torch.amp.GradScaler("cuda", enabled=use_scaler),
    )


def _restore(run: _Run, path: Path) -> _Counters:
    """Load ``last.state.pt`` into the run's model, optimizer, schedule and scaler; its counters and history."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["model_kind"] != run.cfg.model:
        raise ValueError(f"{path} holds a {state['model_kind']} run, the config asks for {run.cfg.model}")
    run.model.head.load_state_dict(state["model"]["head"])
    if "backbone" in state["model"]:
        run.model.backbone.load_state_dict(state["model"]["backbone"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    return _Counters(
        start_epoch=int(state["epoch"]) + 1,
        best_loss=float(state["best_val_loss"]),
        best_epoch=int(state["best_epoch"]),
        bad_epochs=int(state["bad_epochs"]),
        history=json.loads(state["history"]),
    )


def _write_scalars(writer: Any, epoch: int, tr: dict[str, Any], va: dict[str, Any]) -> None:
    """The original's tensorboard scalar names, plus ``Validation/AUC``."""
    writer.add_scalar("Training/Loss", tr["loss"], epoch)
    writer.add_scalar("Training/Accuracy", tr["accuracy"], epoch)
    writer.add_scalar("Training/Learning_Rate", tr["lr"], epoch)
    writer.add_scalar("Validation/Loss", va["loss"], epoch)
    writer.add_scalar("Validation/Accuracy", va["accuracy"], epoch)
    if va["auc"] is not None:
        writer.add_scalar("Validation/AUC", va["auc"], epoch)
    writer.flush()


def _save_epoch(run: _Run, epoch: int, counters: _Counters, *, improved: bool) -> None:
    """``best.pt`` (on improvement), ``last.pt`` and the full resume state ``last.state.pt``."""
    cfg, record = run.cfg, counters.history[-1]
    meta = {
        "epoch": epoch,
        "validation": record["val"],
        "train_list": cfg.train_list,
        "val_list": cfg.val_list,
    }
    model = _unwrap(run.train_model)
    if improved:
        save_model(run.out / "best.pt", model, cfg, meta)
    save_model(run.out / "last.pt", model, cfg, meta)
    _save_state(
        run.out / "last.state.pt",
        {
            "model_kind": cfg.model,
            "epoch": epoch,
            "model": _trainable_state(model),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
            "best_val_loss": counters.best_loss,
            "best_epoch": counters.best_epoch,
            "bad_epochs": counters.bad_epochs,
            "history": json.dumps(counters.history),
            "torch_rng": torch.get_rng_state(),
            "config": json.dumps(cfg.to_dict()),
        },
    )


def _run_epoch(run: _Run, epoch: int, counters: _Counters, *, progress: bool) -> bool:
    """Train and validate one epoch; update the counters and append to the history. Returns ``improved``."""
    cfg = run.cfg
    run.generator.manual_seed(cfg.seed + epoch)  # the same shuffle for an epoch, resumed or not
    if run.train_sampler is not None:
        run.train_sampler.set_epoch(epoch)
    run.train_ds.set_epoch(epoch)
    tr = train_one_epoch(
        run.train_model,
        run.train_loader,
        run.loss_fn,
        run.optimizer,
        run.scheduler if run.per_iter else None,
        run.device,
        epoch=epoch,
        amp=run.amp,
        scaler=run.scaler,
        grad_clip=cfg.grad_clip,
        log_every=cfg.log_every,
        info=run.info,
        progress=progress,
    )
    if not run.per_iter:
        run.scheduler.step()
    va = evaluate(
        run.model, run.val_loader, run.device, pos_weight=run.pos_weight, amp=run.amp, info=run.info
    )
    improved = va["loss"] < counters.best_loss
    if improved:
        counters.best_loss, counters.best_epoch, counters.bad_epochs = va["loss"], epoch, 0
    else:
        counters.bad_epochs += 1
    counters.history.append(
        {
            "epoch": epoch,
            "train": tr,
            "val": {k: va[k] for k in ("n", "loss", "accuracy", "auc", "eer", "f1")},
        }
    )
    return improved


def main(cfg: TrainConfig, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run a whole training (or resume one); returns the run summary (also written to ``summary.json``).

    Args:
        cfg: the resolved config.
        overwrite: start afresh even when ``output_dir`` holds an earlier run (its :data:`RUN_FILES` are removed).
        progress: one line per epoch on stderr (rank 0); otherwise the lines are logged at INFO level.

    Returns:
        ``best_epoch``, ``best_val_loss``, ``epochs_completed``, ``stopped_early``, ``checkpoint`` (best.pt),
        ``history`` (per-epoch train/val metrics), ``pos_weight``, ``train_videos``, ``val_videos``.

    Raises:
        OutputDirError: ``output_dir`` is not empty, and the run neither resumes nor overwrites.
    """
    cfg.validate()
    unset = [key for key in ("data_path", "train_list", "val_list") if not getattr(cfg, key)]
    if unset:
        raise ValueError(
            f"{', '.join(unset)} not set: give them as key=value (the face-crop root of `mintime preprocess` and "
            "the lists of `mintime split`), e.g. data_path=data/faces train_list=lists/train.csv val_list=lists/val.csv"
        )
    threads_before = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _main(cfg, overwrite=overwrite, progress=progress)
    finally:
        torch.set_num_threads(threads_before)


def _main(cfg: TrainConfig, *, overwrite: bool, progress: bool) -> dict[str, Any]:
    resume = _resume_path(cfg)
    replaced = check_output_dir(cfg, resuming=resume is not None, overwrite=overwrite)
    info = setup_distributed(cfg.device)
    device = _resolve_device(cfg, info)
    _seed_all(cfg.seed)
    out = Path(cfg.output_dir)
    reporter = EpochReporter(cfg.epochs, enabled=progress and info.main)
    _barrier(info)  # every rank has checked the folder before rank 0 changes it
    if info.main:
        if replaced:
            _remove_run_files(out)
            reporter.say(f"--overwrite: replacing the earlier run in {out}")
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    _barrier(info)

    run = _setup(cfg, info, device, reporter)
    counters = _Counters()
    if resume is not None:
        counters = _restore(run, resume)
        if info.main:
            reporter.say(
                f"resumed from {resume} at epoch {counters.start_epoch + 1} (best val loss "
                f"{counters.best_loss:.4f} at epoch {counters.best_epoch + 1})"
            )

    writer = None
    if info.main:
        from torch.utils.tensorboard import SummaryWriter

        # one run per training: a resumed run continues the same tb/ and drops the events of any epoch it redoes
        writer = SummaryWriter(
            log_dir=str(out / "tb"), purge_step=counters.start_epoch if resume is not None else None
        )

    stopped_early = False
    for epoch in range(counters.start_epoch, cfg.epochs):
        if counters.bad_epochs >= cfg.patience:
            stopped_early = True
            break
        reporter.epoch_started()
        improved = _run_epoch(run, epoch, counters, progress=progress)
        if info.main:
            assert writer is not None
            record = counters.history[-1]
            _write_scalars(writer, epoch, record["train"], record["val"])
            _save_epoch(run, epoch, counters, improved=improved)
            reporter.epoch_done(epoch, record["train"], record["val"], improved=improved)
        _barrier(info)
    if stopped_early and info.main:
        reporter.say(f"stopped early: no better validation loss for {cfg.patience} epochs")

    summary = {
        "best_epoch": counters.best_epoch,
        "best_val_loss": counters.best_loss,
        "epochs_completed": len(counters.history),
        "last_epoch": counters.history[-1]["epoch"] if counters.history else -1,
        "stopped_early": stopped_early,
        "checkpoint": str(out / "best.pt"),
        "history": counters.history,
        "pos_weight": run.pos_weight,
        "train_videos": len(run.train_ds),
        "val_videos": len(run.val_ds),
        "world_size": info.world_size,
    }
    if info.main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if writer is not None:
            writer.close()
    _barrier(info)
    return summary
