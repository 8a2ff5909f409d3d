"""The self-blended recipe: a MINTIME model that detects face swaps, trained on real faces alone.

Three steps, each resumable, all driven by :func:`run` (``mintime sbi``):

1. **Frames** (:func:`train_frames`): the ImageNet EfficientNet-Lite0 is fine-tuned, stem and first blocks
   frozen, with a linear head on its pooled 1280×7×7 map, on pairs (a real face crop, a self-blended fake of the
   same frame, :mod:`training.sbi`). Both members of a pair go through the same degradation (the face scaled
   to 48–160 px as in real footage, optional blur, JPEG), then the project's own crop (square, 1/3 margin,
   :func:`mintime.faces.crops.square_crop_box` around the MTCNN box) resized and padded to 224 px: training
   sees the inference crop geometry. Every ``eval_every`` steps the frame model scores the validation videos
   (the mean face probability of each video): the backbone of the best validation AUC is kept.
2. **Tracks** (:func:`extract_tracks`): with that backbone frozen, features of 16-frame tracks of held videos,
   real and self-blended with *one* blend and one degradation along the whole track.
3. **Temporal** (:func:`train_temporal`): the MINTIME temporal model on slots built from those tracks by
   :func:`mintime.slots.build_slots` (the inference slot logic): one identity (16 faces), or two identities of
   two videos (8 + 8) where none, one or both are blended, so per-identity attention is trained to point at
   the blended one. The face/frame size ratio is drawn per identity (the crops come from 256-px news crops,
   whose ratio says nothing about real footage).

The verdict threshold is chosen on the validation *real* videos (:func:`choose_threshold`) and stored in the
checkpoint's metadata with the validation figures.

Model selection uses ``validation`` (a folder with ``labels.tsv``); the fakes there are never trained on.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from mintime import contract
from mintime.faces.crops import resize_for_model, square_crop_box
from mintime.fileio import atomic_write
from training.features import faces_to_tensor_input
from training.sbi import SbiParams, camera_noise, sample_params, self_blend
from training.sbi_bank import FrameBank
from training.sbi_config import SbiConfig
from training.video_eval import model_report, pair_accuracy, pairs_of, read_labels, roc_auc

__all__ = [
    "SbiConfig",
    "Degradation",
    "sample_degradation",
    "training_crop",
    "FrameModel",
    "PairDataset",
    "ValidationSet",
    "choose_threshold",
]

logger = logging.getLogger(__name__)


# --- degradation and the training crop ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Degradation:
    """What real footage does to a face, applied alike to a real crop and its fake.

    Attributes:
        face_side: the face box's longer side after scaling the frame (pixels; never enlarged).
        blur: Gaussian sigma at that scale (0 = none).
        jpeg: JPEG quality (0 = none).
        flip: mirror the crop.
        jitter: box jitter (dx1, dy1, dx2, dy2) as fractions of the box side (detector noise).
    """

    face_side: float
    blur: float
    jpeg: int
    flip: bool
    jitter: tuple[float, float, float, float]


def sample_degradation(
    rng: np.random.Generator, face_side: tuple[float, float] = (48.0, 160.0)
) -> Degradation:
    """One draw of :class:`Degradation` (face side log-uniform in ``face_side``)."""
    lo, hi = face_side
    return Degradation(
        face_side=float(math.exp(rng.uniform(math.log(lo), math.log(hi)))),
        blur=float(rng.uniform(0.3, 1.2)) if rng.random() < 0.25 else 0.0,
        jpeg=int(rng.integers(40, 96)) if rng.random() < 0.8 else 0,
        flip=bool(rng.random() < 0.5),
        jitter=tuple(float(v) for v in rng.uniform(-0.04, 0.04, size=4)),
    )


def training_crop(
    frame: np.ndarray, box: np.ndarray, deg: Degradation, size: int = 224
) -> tuple[np.ndarray, int]:
    """The degraded inference crop of one face.

    Args:
        frame: (H, W, 3) uint8 RGB.
        box: (4,) ``x1, y1, x2, y2`` MTCNN box in ``frame``'s pixels.
        deg: the degradation.
        size: model input side.

    Returns:
        ``(crop, side)``: (size, size, 3) uint8 **BGR** (the backbone's input order) and the crop's side in pixels
        of the scaled frame (for the size ratio).
    """
    box = np.asarray(box, np.float64)[:4]
    side = float(max(box[2] - box[0], box[3] - box[1]))
    box = box + np.asarray(deg.jitter) * side
    scale = min(1.0, deg.face_side / side)
    img = frame
    if scale < 1.0:
        h, w = frame.shape[:2]
        img = cv2.resize(
            frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        box = box * scale
    if deg.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), deg.blur)
    if deg.jpeg:
        ok, enc = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, deg.jpeg])
        img = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1] if ok else img
    x0, y0, x1, y1 = square_crop_box(box, img.shape[1], img.shape[0])
    if x1 <= x0 or y1 <= y0:
        raise ValueError("empty crop")
    crop = img[y0:y1, x0:x1]
    if deg.flip:
        crop = crop[:, ::-1]
    out = resize_for_model(np.ascontiguousarray(crop[..., ::-1]), size)
    return out, int(max(y1 - y0, x1 - x0))


def to_input(crops_bgr: list[np.ndarray]) -> Tensor:
    """(S, S, 3) uint8 BGR crops → (N, 3, S, S) float32 0..255 (the backbone's input convention)."""
    return torch.from_numpy(faces_to_tensor_input(crops_bgr))


def pair_crops(
    frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray, params: SbiParams, deg: Degradation
) -> tuple[np.ndarray, np.ndarray, int]:
    """A real crop and the crop of its self-blended fake, one degradation for both.

    Returns:
        ``(real, fake, side)``: (224, 224, 3) uint8 BGR each, and the crop side (see :func:`training_crop`).
    """
    fake, _ = self_blend(frame, landmarks, params)
    real_crop, side = training_crop(camera_noise(frame, params), box, deg)
    fake_crop, _ = training_crop(fake, box, deg)
    return real_crop, fake_crop, side


# --- frame model and data ----------------------------------------------------------------------------------------
class FrameModel(nn.Module):
    """Backbone + a linear head on the average-pooled feature map: (N, 3, 224, 224) → (N,) logits."""

    def __init__(self, backbone: nn.Module, frozen_blocks: int = 3) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(int(backbone.out_channels), 1)
        self.frozen: list[nn.Module] = []
        if frozen_blocks >= 0:
            self.frozen = [backbone._conv_stem, backbone._bn0, *backbone._blocks[:frozen_blocks]]
            for module in self.frozen:
                for p in module.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> FrameModel:
        super().train(mode)
        for module in self.frozen:
            module.eval()  # frozen BatchNorm keeps its ImageNet statistics
        return self

    def forward(self, x: Tensor) -> Tensor:
        f = self.backbone(x)
        return self.head(self.dropout(f.mean((2, 3)))).squeeze(1)


class PairDataset(torch.utils.data.Dataset):
    """Item i: (2, 3, 224, 224) float32 BGR 0..255, a real crop and its self-blended fake, same degradation.

    The draws of the item of bank frame ``j`` in epoch ``e`` come from ``default_rng([seed, e, j])``:
    reproducible, different per epoch.
    """

    def __init__(self, bank: FrameBank, indices: np.ndarray, cfg: SbiConfig) -> None:
        self.bank, self.indices, self.cfg = bank, np.asarray(indices), cfg
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Tensor:
        j = int(self.indices[i])
        rng = np.random.default_rng([self.cfg.seed, self.epoch, j])
        params = sample_params(rng, strength=self.cfg.strength)
        deg = sample_degradation(rng, self.cfg.face_side)
        real, fake, _ = pair_crops(
            self.bank.frames[j], self.bank.boxes[j], self.bank.landmarks[j], params, deg
        )
        return to_input([real, fake])


def split_videos(bank: FrameBank, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train frame indices, held-out frame indices), split by video."""
    vids = np.unique(bank.video)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(vids, size=max(1, int(round(len(vids) * fraction))), replace=False).tolist())
    mask = np.array([v in held for v in bank.video])
    return np.flatnonzero(~mask), np.flatnonzero(mask)


# --- validation --------------------------------------------------------------------------------------------------
def choose_threshold(real_scores: Sequence[float] | np.ndarray, target_fpr: float) -> float:
    """The lowest probability threshold that calls at most ``target_fpr`` of the real videos fake (never < 0.5).

    A video is fake when its probability is *above* the threshold.
    """
    s = np.sort(np.asarray(real_scores, np.float64))
    if s.size == 0:
        return 0.5
    allowed = int(math.floor(target_fpr * s.size))  # reals allowed above the threshold
    t = s[s.size - 1 - allowed]
    return float(max(0.5, t))


@dataclass
class ValidationSet:
    """The validation videos through the inference face stage, once: their slot tensors and labels."""

    names: list[str]
    labels: np.ndarray  # (V,) 1 = fake
    pairs: dict[str, tuple[str, str]]  # pair name -> (real name, fake name)
    slots: list[
        dict[str, np.ndarray]
    ]  # contract name -> array, per video (None-free: videos without a face dropped)

    @property
    def label(self) -> dict[str, int]:
        """Video name → 1 fake / 0 real."""
        return dict(zip(self.names, (int(v) for v in self.labels), strict=True))

    @classmethod
    def build(
        cls, folder: str | Path, cache: str | Path | None = None, num_frames: int = 16
    ) -> ValidationSet:
        """Run decode + the face stage (``mintime predict``'s) on every video of ``labels.tsv`` (cached in ``cache``)."""
        folder = Path(folder)
        rows = read_labels(folder)
        if cache is not None and Path(cache).is_file():
            with open(cache, "rb") as fh:
                data = torch.load(fh, weights_only=False)
            return cls(**data)
        from mintime.config import PipelineConfig
        from mintime.faces.stage import FaceStage
        from mintime.video import decode_sampled

        stage = FaceStage(PipelineConfig(num_frames=num_frames))
        names, labels, slots = [], [], []
        for rel, label, _pair in rows:
            res = stage(decode_sampled(folder / rel, num_frames))
            if not res.ok:
                logger.warning("validation video %s: no face, left out", rel)
                continue
            names.append(rel)
            labels.append(label)
            slots.append({k: np.asarray(v) for k, v in res.tensors.as_inputs().items()})
        out = cls(names, np.asarray(labels), pairs_of(rows), slots)
        if cache is not None:
            with atomic_write(cache) as fh:
                torch.save(asdict(out), fh)
        return out


@torch.inference_mode()
def frame_scores(model: FrameModel, val: ValidationSet) -> dict[str, float]:
    """Per validation video: the mean fake probability of its (non-dummy) slot faces."""
    model.eval()
    out = {}
    for name, s in zip(val.names, val.slots, strict=True):
        faces = torch.from_numpy(s[contract.FACES][s[contract.SLOT_IDENTITY] >= 0])
        out[name] = float(torch.sigmoid(model(faces.float())).mean())
    return out


def score_report(scores: dict[str, float], val: ValidationSet) -> dict[str, float]:
    """Validation AUC and pair accuracy of per-video scores."""
    label = val.label
    return {
        "auc": roc_auc([label[n] for n in scores], list(scores.values())),
        "pairs": pair_accuracy(scores, val.pairs),
    }


def improves(rec: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Model selection on the validation videos: AUC + half the pair accuracy, ties to the later record."""
    return best is None or rec["auc"] + 0.5 * rec["pairs"] >= best["auc"] + 0.5 * best["pairs"]


# --- step 1: frames ----------------------------------------------------------------------------------------------
def _log(msg: str, log: Callable[[str], None] | None) -> None:
    (log or logger.info)(msg)


def train_frames(
    cfg: SbiConfig, bank: FrameBank, val: ValidationSet | None, log: Callable[[str], None] | None = None
) -> Path:
    """Fine-tune the backbone on self-blended pairs for ``cfg.frame_minutes``; resumable from ``frames.state.pt``.

    Returns:
        ``<out>/frames_best.pt``: the backbone state of the best validation AUC (or the last one without
        validation), with the evaluation history.
    """
    from mintime.networks import build_backbone

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path, best_path = out / "frames.state.pt", out / "frames_best.pt"
    torch.manual_seed(cfg.seed)
    model = FrameModel(build_backbone("efficientnet_lite0", pretrained=True), cfg.frozen_blocks)
    model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.frame_lr, weight_decay=cfg.frame_weight_decay)
    train_idx, _held = split_videos(bank, cfg.holdout_fraction, cfg.seed)
    ds = PairDataset(bank, train_idx, cfg)
    done = {"step": 0, "seconds": 0.0, "epoch": 0, "history": [], "best": None}
    if state_path.is_file():
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        done = st["done"]
        _log(f"frames: resumed at step {done['step']} ({done['seconds'] / 60:.1f} min done)", log)
    budget = cfg.frame_minutes * 60.0
    loss_fn = nn.BCEWithLogitsLoss()
    labels = torch.tensor([0.0, 1.0]).repeat(cfg.frame_batch_pairs)

    def evaluate_and_save() -> None:
        rec: dict[str, Any] = {"step": done["step"], "minutes": round(done["seconds"] / 60, 2)}
        if val is not None:
            rec.update(score_report(frame_scores(model, val), val))
        done["history"].append(rec)
        # step 0 (the ImageNet start, random head) is only a reference
        better = rec["step"] > 0 and (val is None or improves(rec, done["best"]))
        if better:
            done["best"] = rec
            with atomic_write(best_path) as fh:
                torch.save(
                    {"backbone": model.backbone.state_dict(), "head": model.head.state_dict(), "record": rec},
                    fh,
                )
        with atomic_write(state_path) as fh:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "done": done}, fh)
        _log(
            f"frames: step {rec['step']} ({rec['minutes']} min): "
            + ", ".join(f"{k} {v:.3f}" for k, v in rec.items() if k not in ("step", "minutes"))
            + (" (best)" if better else ""),
            log,
        )
        model.train()

    if done["step"] == 0 and val is not None:
        evaluate_and_save()  # the ImageNet start, for reference
    model.train()
    while done["seconds"] < budget:
        ds.epoch = done["epoch"]
        g = torch.Generator().manual_seed(cfg.seed * 1000 + done["epoch"])
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=cfg.frame_batch_pairs,
            shuffle=True,
            generator=g,
            num_workers=1,
            drop_last=True,
            persistent_workers=False,
            prefetch_factor=4,
        )
        skip = done.get("in_epoch", 0)
        t_last = time.perf_counter()
        running = []
        for k, batch in enumerate(loader):
            if k < skip:
                continue
            x = batch.reshape(-1, *batch.shape[2:]).contiguous(memory_format=torch.channels_last)
            lr = cfg.frame_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, done["seconds"] / budget)))
            for group in opt.param_groups:
                group["lr"] = max(lr, cfg.frame_lr * 0.02)
            loss = loss_fn(model(x), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            now = time.perf_counter()
            done["seconds"] += now - t_last
            t_last = now
            done["step"] += 1
            done["in_epoch"] = k + 1
            running.append(loss.item())
            if done["step"] % 25 == 0:
                rate = done["step"] / max(done["seconds"], 1e-6)
                est_steps = int(rate * budget)
                _log(
                    f"frames: step {done['step']}/{est_steps} loss {np.mean(running[-25:]):.4f} "
                    f"{rate * 2 * cfg.frame_batch_pairs:.1f} img/s, ETA {max(0.0, budget - done['seconds']) / 60:.1f} min",
                    log,
                )
            if done["step"] % cfg.eval_every == 0:
                evaluate_and_save()
                t_last = time.perf_counter()
            if done["seconds"] >= budget:
                break
        else:
            done["epoch"] += 1
            done["in_epoch"] = 0
    evaluate_and_save()
    return best_path


# --- step 2: tracks ----------------------------------------------------------------------------------------------
@dataclass
class Tracks:
    """Backbone features of real and self-blended tracks.

    Attributes:
        features: (V, 2, T, C, 7, 7) float16; ``[:, 0]`` real, ``[:, 1]`` blended (one blend per track).
        sides: (V, T) int32 crop side in pixels (of the scaled frame).
        frames: (V, T) int64 frame indices.
        counts: (V,) int32 faces per track (slots past it are unused).
    """

    features: np.ndarray
    sides: np.ndarray
    frames: np.ndarray
    counts: np.ndarray


@torch.inference_mode()
def _features(backbone: nn.Module, crops: list[np.ndarray], batch: int = 32) -> np.ndarray:
    out = []
    for s in range(0, len(crops), batch):
        x = to_input(crops[s : s + batch]).contiguous(memory_format=torch.channels_last)
        out.append(backbone(x).to(torch.float16).numpy())
    return np.concatenate(out)


def track_crops(
    bank: FrameBank, rows: np.ndarray, params: SbiParams, deg: Degradation
) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Real and blended crops of one track: the same blend and degradation on every frame (each frame's own
    landmarks and box)."""
    real, fake, sides = zip(
        *(pair_crops(bank.frames[j], bank.boxes[j], bank.landmarks[j], params, deg) for j in rows),
        strict=True,
    )
    return list(real), list(fake), list(sides)


def extract_tracks(
    cfg: SbiConfig,
    bank: FrameBank,
    backbone: nn.Module,
    name: str,
    log: Callable[[str], None] | None = None,
    num_slots: int = 16,
) -> Tracks:
    """Features of ``cfg.track_videos`` training videos, real and blended, cached in ``<out>/<name>/``."""
    folder = Path(cfg.out) / name
    folder.mkdir(parents=True, exist_ok=True)
    train_idx, _ = split_videos(bank, cfg.holdout_fraction, cfg.seed)
    groups = bank.by_video()
    train_set = set(bank.video[train_idx].tolist())
    vids = [v for v in sorted(groups) if v in train_set and len(groups[v]) >= 4]  # a track needs a few faces
    rng = np.random.default_rng([cfg.seed, 7])
    vids = sorted(rng.choice(vids, size=min(cfg.track_videos, len(vids)), replace=False).tolist())
    backbone = backbone.eval().to(memory_format=torch.channels_last)
    chunk = 50
    parts = []
    t0 = time.perf_counter()
    for c in range(0, len(vids), chunk):
        path = folder / f"tracks_{c // chunk:04d}.npz"
        if not path.is_file():
            feats = np.zeros(
                (min(chunk, len(vids) - c), 2, num_slots, int(backbone.out_channels), 7, 7), np.float16
            )
            sides = np.zeros(feats.shape[:1] + (num_slots,), np.int32)
            frames = np.zeros(feats.shape[:1] + (num_slots,), np.int64)
            counts = np.zeros(feats.shape[:1], np.int32)
            for k, v in enumerate(vids[c : c + chunk]):
                rows = groups[v][:num_slots]
                trng = np.random.default_rng([cfg.seed, 11, v])
                real, fake, sd = track_crops(
                    bank,
                    rows,
                    sample_params(trng, strength=cfg.strength),
                    sample_degradation(trng, cfg.face_side),
                )
                f = _features(backbone, real + fake)
                n = len(rows)
                feats[k, 0, :n], feats[k, 1, :n] = f[:n], f[n:]
                sides[k, :n], frames[k, :n], counts[k] = sd, bank.frame_index[rows], n
            with atomic_write(path) as fh:
                np.savez(fh, features=feats, sides=sides, frames=frames, counts=counts)
        with np.load(path) as z:
            parts.append({k: z[k] for k in z.files})
        done = c + len(parts[-1]["counts"])
        el = time.perf_counter() - t0
        _log(f"tracks ({name}): {done}/{len(vids)} videos, {el / 60:.1f} min", log)
    return Tracks(
        **{k: np.concatenate([p[k] for p in parts]) for k in ("features", "sides", "frames", "counts")}
    )


# --- step 3: the temporal model ----------------------------------------------------------------------------------
def compose_video(
    tracks: Tracks, rng: np.random.Generator, *, num_slots: int = 16, max_identities: int = 2
) -> tuple[dict[str, np.ndarray], float, np.ndarray]:
    """One training video made of one or two tracks: (slot inputs, label, per-slot blended flag).

    One identity: a whole track, real or blended (1/2 each). Two identities: two different tracks, each real or
    blended (none 1/2, first 1/5, second 1/5, both 1/10); label 1 if any is blended. Each identity gets a face /
    frame area ratio drawn log-uniformly in 0.3 %..30 % (the size embedding must not learn the news crops).
    """
    from mintime.slots import FaceRecord, build_slots

    two = rng.random() < 0.5
    ids = rng.choice(len(tracks.counts), size=2 if two else 1, replace=False)
    if two:
        u = rng.random()
        blended = [(False, False), (True, False), (False, True), (True, True)][
            0 if u < 0.5 else 1 if u < 0.7 else 2 if u < 0.9 else 3
        ]
    else:
        blended = (bool(rng.random() < 0.5),)
    frame_w = frame_h = 1000
    identities = []
    for v, b in zip(ids, blended, strict=True):
        n = int(tracks.counts[v])
        ratio = math.exp(rng.uniform(math.log(0.003), math.log(0.3)))
        side = int(round(math.sqrt(ratio) * frame_w))
        faces = [FaceRecord(int(tracks.frames[v, t]), side, side, key=(int(v), int(b), t)) for t in range(n)]
        identities.append(faces)
    plan = build_slots(
        identities,
        frame_size=(frame_w, frame_h),
        num_slots=num_slots,
        max_identities=max_identities,
        sampling="odd" if rng.random() < 0.5 else "even",
    )
    c = tracks.features.shape[3]
    feats = np.zeros((num_slots, c, 7, 7), np.float32)
    flags = np.zeros(num_slots, bool)
    for s, face in enumerate(plan.faces):
        if face is None:
            continue
        v, b, t = face.key
        feats[s] = tracks.features[v, b, t]
        flags[s] = bool(b)
    inputs = {
        "features": feats,
        "mask": plan.mask.astype(bool),
        "identities_mask": plan.identities_mask.astype(bool),
        "size_ids": plan.size_ids.astype(np.int64),
        "positions": plan.positions.astype(np.int64),
    }
    return inputs, float(any(blended)), flags


def _batch(items: list[dict[str, np.ndarray]]) -> dict[str, Tensor]:
    return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}


@torch.inference_mode()
def temporal_scores(
    head: nn.Module, backbone: nn.Module, val: ValidationSet, cache: dict[str, np.ndarray]
) -> dict[str, float]:
    """P(fake) of each validation video through backbone + temporal model (``mintime predict``'s networks)."""
    head.eval()
    out = {}
    for name, s in zip(val.names, val.slots, strict=True):
        if name not in cache:
            cache[name] = backbone(torch.from_numpy(s[contract.FACES]).float()).numpy()
        logit = head(
            torch.from_numpy(cache[name])[None],
            torch.from_numpy(s[contract.MASK])[None],
            torch.from_numpy(s[contract.IDENTITIES_MASK])[None],
            torch.from_numpy(s[contract.SIZE_IDS])[None],
            torch.from_numpy(s[contract.POSITIONS])[None],
        )
        out[name] = float(torch.sigmoid(logit).reshape(-1)[0])
    return out


def train_temporal(
    cfg: SbiConfig,
    tracks: Tracks,
    backbone: nn.Module,
    val: ValidationSet | None,
    name: str,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train the MINTIME temporal model on composed track videos; keep the epoch of the best validation AUC.

    Returns:
        The head (best epoch's weights, eval mode) and ``{"best", "scores" (that epoch's validation P(fake) per
        video), "history", "config"}``.
    """
    from mintime.models.temporal import MintimeTemporal, TemporalConfig

    torch.manual_seed(cfg.seed)
    tcfg = TemporalConfig(**{**cfg.temporal, "channels": int(backbone.out_channels), "num_frames": 16})
    head = MintimeTemporal(tcfg)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.temporal_lr, weight_decay=0.05)
    steps_per_epoch = max(1, 2 * len(tracks.counts) // cfg.temporal_batch)
    total = steps_per_epoch * cfg.temporal_epochs
    loss_fn = nn.BCEWithLogitsLoss()
    cache: dict[str, np.ndarray] = {}
    best: dict[str, Any] | None = None
    best_state = None
    best_scores: dict[str, float] = {}
    history = []
    step = 0
    t0 = time.perf_counter()
    for epoch in range(cfg.temporal_epochs):
        rng = np.random.default_rng([cfg.seed, 13, epoch])
        head.train()
        losses = []
        for _ in range(steps_per_epoch):
            items, labels = [], []
            for _ in range(cfg.temporal_batch):
                inputs, label, _ = compose_video(tracks, rng)
                items.append(inputs)
                labels.append(label)
            b = _batch(items)
            lr = cfg.temporal_lr * 0.5 * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = lr
            logits = head(
                b["features"], b["mask"], b["identities_mask"], b["size_ids"], b["positions"]
            ).reshape(-1)
            loss = loss_fn(logits, torch.tensor(labels))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
        rec: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        scores: dict[str, float] = {}
        if val is not None:
            scores = temporal_scores(head, backbone, val, cache)
            rec.update(score_report(scores, val))
        history.append(rec)
        better = val is None or improves(rec, best)
        if better:
            best, best_scores = rec, scores
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        el = time.perf_counter() - t0
        _log(
            f"temporal ({name}): epoch {epoch + 1}/{cfg.temporal_epochs} "
            + ", ".join(f"{k} {v:.3f}" for k, v in rec.items() if k != "epoch")
            + (" (best)" if better else "")
            + f", ETA {el / (epoch + 1) * (cfg.temporal_epochs - epoch - 1) / 60:.1f} min",
            log,
        )
    assert best_state is not None
    head.load_state_dict(best_state)
    return head.eval(), {"best": best, "scores": best_scores, "history": history, "config": tcfg}


# --- the whole recipe --------------------------------------------------------------------------------------------
MODEL_NAME = "mintime-sbi-lite0-v1"


def _bank_summary(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "bank.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def sbi_caveat(report: dict[str, Any]) -> str:
    """The one-line caveat of a self-blended model, with its measured validation AUC when there is one."""
    measured = (
        f"; validation AUC {report['auc']:.2f} on {report['videos']} face-swap/real videos"
        if report.get("auc") is not None and report.get("videos")
        else "; not measured on real face swaps"
    )
    return (
        "trained on self-blended real faces only (it has seen no real deepfake)"
        + measured
        + "; it looks for blended faces, not fully generated or lip-synced video"
    )


def write_checkpoint(
    path: str | Path,
    *,
    head: nn.Module,
    backbone: nn.Module | None,
    cfg: SbiConfig,
    name: str,
    threshold: float,
    report: dict[str, Any],
    trained_on: str,
) -> Path:
    """A project checkpoint (``mintime predict --checkpoint``) with the threshold and the figures in its metadata.

    ``backbone=None`` stores no backbone: the stock ImageNet Lite0 (the frozen-ImageNet baseline).
    """
    from mintime.checkpoints import save_checkpoint

    meta = {
        "name": name,
        "trained_on": trained_on,
        "model_card": "mintime/weights/MODEL_CARD.md",
        "threshold": float(threshold),
        "caveat": sbi_caveat(report),
        "recipe": "self-blended images (training/sbi.py, training/sbi_train.py)",
        "sbi_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "validation": report,
        "num_slots": 16,
        "max_identities": 2,
    }
    return save_checkpoint(
        path,
        temporal_config=head.config.to_dict(),
        temporal_state=head,
        backbone="efficientnet_lite0",
        backbone_state=backbone,
        metadata=meta,
    )


def run(cfg: SbiConfig, *, baseline: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Frames → tracks → temporal, then the checkpoint (and the frozen-ImageNet baseline's) and ``summary.json``.

    Every step resumes from what ``cfg.out`` already holds.
    """
    from mintime.networks import build_backbone
    from training.sbi_bank import load_bank

    torch.set_num_threads(max(1, cfg.threads))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    bank = load_bank(cfg.bank)
    _log(f"bank: {len(bank)} faces of {len(np.unique(bank.video))} videos ({cfg.bank})", log)
    val = None
    if cfg.validation:
        val = ValidationSet.build(cfg.validation, out / "validation_slots.pt")
        _log(f"validation: {len(val.names)} videos ({int(val.labels.sum())} fake) from {cfg.validation}", log)

    best_path = out / "frames_best.pt"
    if not (out / "frames.done").is_file():
        train_frames(cfg, bank, val, log)
        (out / "frames.done").write_text("done\n")
    best = torch.load(best_path, weights_only=True)
    backbone = build_backbone("efficientnet_lite0", state=best["backbone"])
    _log(f"frames: best record {best['record']}", log)

    bank_info = _bank_summary(cfg.bank)
    trained_on = (
        f"self-blended images from real faces only: {bank_info.get('videos', '?')} videos of "
        f"{Path(bank_info.get('source', cfg.bank)).name} ({len(bank)} face frames)"
    )
    summary: dict[str, Any] = {"frames": best["record"]}
    models = [("sbi", backbone, MODEL_NAME)]
    if baseline:
        models.append(
            (
                "imagenet",
                build_backbone("efficientnet_lite0", pretrained=True),
                "frozen-imagenet-lite0-baseline",
            )
        )
    for tag, bb, name in models:
        ck_path, rec_path = out / f"{tag}.pt", out / f"{tag}.json"
        if ck_path.is_file() and rec_path.is_file():
            summary[tag] = json.loads(rec_path.read_text())
            _log(f"{tag}: {ck_path} already written", log)
            continue
        tracks = extract_tracks(cfg, bank, bb, f"tracks_{tag}", log)
        head, info = train_temporal(cfg, tracks, bb, val, tag, log)
        del tracks
        threshold, report = 0.5, {}
        if val is not None:
            scores = info["scores"]  # the kept epoch's, already computed
            label = val.label
            threshold = choose_threshold([v for n, v in scores.items() if label[n] == 0], cfg.target_fpr)
            report = model_report(scores, label, val.pairs, threshold)
            report["target_fpr"] = cfg.target_fpr
            report["source"] = str(cfg.validation)
        write_checkpoint(
            ck_path,
            head=head,
            backbone=None if tag == "imagenet" else bb,
            cfg=cfg,
            name=name,
            threshold=threshold,
            report=report,
            trained_on=trained_on,
        )
        summary[tag] = {"checkpoint": str(ck_path), "temporal_best": info["best"], "validation": report}
        with atomic_write(rec_path) as fh:
            fh.write(json.dumps(summary[tag], indent=2, default=str).encode())
        _log(
            f"{tag}: wrote {ck_path} (threshold {threshold:.4f}; validation { ({k: report.get(k) for k in ('auc', 'auc_95ci', 'pairs_fake_above_real')}) })",
            log,
        )
    with atomic_write(out / "summary.json") as fh:
        fh.write(json.dumps(summary, indent=2, default=str).encode())
    return summary
