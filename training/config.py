"""The training configuration: one dataclass, yaml files for presets, ``key=value`` overrides from the CLI.

Resolution order (later wins): dataclass defaults → ``--config FILE`` (yaml, flat keys; ``temporal:`` is a
nested mapping of :class:`mintime.models.temporal.TemporalConfig` fields) → ``key=value`` overrides (dotted
keys such as ``temporal.depth=2`` reach into the nested mapping). The resolved config is written next to the
checkpoints as ``config.yaml`` (:func:`save_config`), so every run records what it ran with.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainConfig", "load_config", "apply_overrides", "save_config", "parse_override", "CONFIG_DIR"]

logger = logging.getLogger(__name__)

#: Shipped presets (``training/configs/*.yaml``).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

_CHOICES = {
    "model": ("mintime", "baseline"),
    "identities_ordering": ("size", "count", "random"),
    "mask_regime": ("correct", "all_true"),
    "augmentation": ("none", "min", "max"),
    "optimizer": ("sgd", "adamw", "adam"),
    "scheduler": ("cosine", "step", "none"),
    "amp": ("auto", "on", "off"),
}


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Data:
        data_path: root of the face-crop layout written by ``mintime preprocess`` / ``mintime synth``.
        train_list / val_list: list files ``<folder> <label> <method>`` (space separated, no header),
            folders relative to ``data_path`` (``mintime split`` writes them).
        methods: keep only these method ids (None = all).
        max_videos: truncate each list after shuffling (-1 = all).
        num_slots: face slots F (8, 16 or 32).
        max_identities: identities kept per video, ordered by ``identities_ordering``.
        identities_ordering: ``size`` (mean face side, the published method), ``count`` or ``random``.
        mask_regime: ``correct`` (dummy slots hidden) or ``all_true`` (the original training loader's bug).
        augmentation: ``none``, ``min`` or ``max`` (same random parameters for all faces of a video).
        workers: DataLoader worker processes.

    Model:
        model: ``mintime`` or ``baseline`` (pooled features → MLP → mean of per-face logits).
        temporal_preset: ``default`` (dim 512, depth 9), ``tiny``, ``original_ef`` or ``original_xc``.
        temporal: overrides of the preset's TemporalConfig fields (``channels`` follows the backbone).
        baseline_hidden: hidden width of the baseline MLP.
        backbone: name for :func:`mintime.models.create_backbone`.
        pretrained: start the backbone from its installable pretrained weights.
        extractor_weights: a state-dict file for the backbone (overrides ``pretrained``).
        freeze_backbone: keep the backbone frozen (eval mode, no grad).
        unfreeze_blocks: with ``freeze_backbone`` False, train only the last k blocks (-1 = whole backbone).
        cache_features: compute frozen backbone features once per face crop and train on them (None = when
            the backbone is frozen and augmentation is ``none``).
        cache_dir: where feature caches live (default ``<output_dir>/feature_cache``).

    Optimisation:
        optimizer / lr / weight_decay / momentum: the optimizer (``sgd`` without momentum is the original).
        scheduler: ``cosine`` (per iteration to ``lr * lr_min_ratio``), ``step`` (per epoch) or ``none``.
        warmup_epochs: linear warm-up length (fraction of epochs allowed) for ``cosine``.
        epochs / batch_size / val_batch_size: loop sizes.
        grad_clip: clip the global grad norm (None = off).
        pos_weight: BCE positive-class weight (None = n_real / n_fake of the training list).
        amp: mixed precision (``auto`` = on with CUDA).
        patience: stop after this many epochs without a new best validation loss.
        seed: python / numpy / torch seed.

    Run:
        device: ``auto``, ``cpu``, ``cuda`` (torchrun ranks use ``cuda:LOCAL_RANK``).
        output_dir: checkpoints, ``config.yaml``, tensorboard logs (``tb/``) and the feature cache.
        resume: a ``*.state.pt`` file, ``auto`` (``<output_dir>/last.state.pt`` when it exists) or None.
        log_every: log a training line every N iterations.
        threads: torch CPU threads for this run (0 = torch's default; 1 is fastest on a loaded machine).
    """

    # data
    data_path: str = ""
    train_list: str = ""
    val_list: str = ""
    methods: list[int] | None = None
    max_videos: int = -1
    num_slots: int = 16
    max_identities: int = 2
    identities_ordering: str = "size"
    mask_regime: str = "correct"
    augmentation: str = "none"
    workers: int = 0
    # model
    model: str = "mintime"
    temporal_preset: str = "default"
    temporal: dict[str, Any] = field(default_factory=dict)
    baseline_hidden: int = 512
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    extractor_weights: str | None = None
    freeze_backbone: bool = True
    unfreeze_blocks: int = -1
    cache_features: bool | None = None
    cache_dir: str | None = None
    # optimisation
    optimizer: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    momentum: float = 0.0
    scheduler: str = "cosine"
    lr_min_ratio: float = 0.1
    warmup_epochs: float = 0.0
    step_size: int = 5
    gamma: float = 0.1
    epochs: int = 30
    batch_size: int = 8
    val_batch_size: int = 8
    grad_clip: float | None = None
    pos_weight: float | None = None
    amp: str = "auto"
    patience: int = 5
    seed: int = 42
    # run
    device: str = "auto"
    output_dir: str = "outputs/train"
    resume: str | None = None
    log_every: int = 50
    threads: int = 0

    def validate(self) -> None:
        """Raise ValueError for unknown choices or impossible combinations."""
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.num_slots not in (8, 16, 32):
            raise ValueError(f"num_slots must be 8, 16 or 32, got {self.num_slots}")
        if self.max_identities < 1:
            raise ValueError("max_identities must be >= 1")
        if self.cache_features and self.augmentation != "none":
            raise ValueError(
                "cache_features needs augmentation 'none' (cached features cannot see per-epoch augmentation)"
            )
        if self.cache_features and not self.freeze_backbone:
            raise ValueError("cache_features needs freeze_backbone: true")
        if self.epochs < 1 or self.batch_size < 1 or self.val_batch_size < 1:
            raise ValueError("epochs, batch_size and val_batch_size must be >= 1")

    @property
    def use_cache(self) -> bool:
        """Whether backbone features are cached (``cache_features`` resolved)."""
        if self.cache_features is None:
            return self.freeze_backbone and self.augmentation == "none"
        return bool(self.cache_features)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (yaml/JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a flat mapping; unknown keys raise ValueError (typos must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown} (known: {sorted(names)})")
        cfg = cls()
        for key, value in data.items():
            setattr(cfg, key, _coerce(key, value))
        return cfg


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, value: Any) -> Any:
    """Convert a yaml/CLI value to the field's type where that is unambiguous (ints given for floats, ...).

    Raises:
        ValueError: naming the key, when the value cannot be converted.
    """
    try:
        return _convert(key, value)
    except (TypeError, ValueError) as exc:
        kind = str(_FIELD_TYPES[key]).replace(" | None", "")
        raise ValueError(f"{key}: expected {kind}, got {value!r}") from exc


def _convert(key: str, value: Any) -> Any:
    kind = str(_FIELD_TYPES[key])
    if value is None:
        return None
    if kind.startswith("float") and isinstance(value, (int, str)) and not isinstance(value, bool):
        return float(value)
    if kind.startswith("int") and isinstance(value, str):
        return int(value)
    if kind.startswith("int") and isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value} is not a whole number")
        return int(value)
    if kind.startswith("str") and not isinstance(value, str):
        return str(value)
    if key == "methods":
        if isinstance(value, (int, str)):
            value = [value]
        return [int(v) for v in value]
    if key == "temporal" and not isinstance(value, dict):
        raise ValueError("temporal must be a mapping of TemporalConfig fields")
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` → (key, yaml-parsed value). ``"temporal.depth=2"`` keeps the dotted key."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip().replace("-", "_")
    value = yaml.safe_load(raw) if raw.strip() else None
    return key, value


def apply_overrides(cfg: TrainConfig, overrides: list[str] | dict[str, Any]) -> TrainConfig:
    """Return a copy of ``cfg`` with overrides applied (``key=value`` strings or a mapping)."""
    items = [parse_override(o) for o in overrides] if isinstance(overrides, list) else list(overrides.items())
    data = cfg.to_dict()
    for key, value in items:
        if key.startswith("temporal."):
            data["temporal"] = {**data["temporal"], key.split(".", 1)[1]: value}
        else:
            data[key] = value
    return TrainConfig.from_dict(data)


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults ← yaml file ← overrides; validated.

    Args:
        path: a yaml file, or the name of a shipped preset (``demo``, ``tiny``, ...; see :data:`CONFIG_DIR`).
        overrides: ``key=value`` strings or a mapping.
    """
    cfg = TrainConfig()
    if path is not None:
        p = Path(path)
        if not p.is_file() and (CONFIG_DIR / f"{path}.yaml").is_file():
            p = CONFIG_DIR / f"{path}.yaml"
        if not p.is_file():
            presets = ", ".join(sorted(q.stem for q in CONFIG_DIR.glob("*.yaml")))
            raise FileNotFoundError(
                f"training config not found: {path} (a yaml file, or a preset: {presets})"
            )
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise ValueError(f"{p}: not valid yaml{line}: {getattr(exc, 'problem', None) or exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{p}: a training config must be a yaml mapping")
        cfg = TrainConfig.from_dict({k.replace("-", "_"): v for k, v in data.items()})
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    cfg.validate()
    return cfg


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as yaml (what ``load_config`` reads back to the same values)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path
