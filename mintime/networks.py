"""The one door to weights: every checkpoint kind → the two networks, plus a description of what they are.

* :func:`build_backbone`: the only way a backbone is built with its weights (a registry name plus a state dict,
  a state-dict file of the authors, or the registry's pretrained weights).
* :func:`load_networks`: a project checkpoint (MINTIME or baseline, from ``mintime train``), the authors'
  MINTIME-XC / MINTIME-EF file pair, or (nothing given) the shipped default checkpoint → :class:`Networks`.

``mintime predict``, ``mintime export``, the Triton ``backbone``/``temporal`` models, ``mintime evaluate`` and
the parity tests all load through here. :attr:`Networks.model` is the ``model`` block every result carries
(name, kind, weights files with their SHA-256, what the weights were trained on, the model card).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mintime import checkpoints, contract
from mintime.explain import DEFAULT_THRESHOLD
from mintime.fileio import sha256_file as file_digest
from mintime.models.backbones import create_backbone
from mintime.repository import DEFAULT_CHECKPOINT, DEMO_CHECKPOINT

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEMO_CHECKPOINT",
    "DEMO_NAME",
    "Networks",
    "WeightsNotFoundError",
    "build_backbone",
    "load_networks",
    "describe_checkpoint",
    "file_digest",
    "validate_weights_arguments",
]

logger = logging.getLogger(__name__)

DEMO_NAME = "mintime-demo-synthetic-v1"
#: The one-line caveat every output shows for the demo weights.
DEMO_CAVEAT = "demo model trained on synthetic face swaps only (mintime synth); it is not a real-world deepfake detector"
_VARIANT_BACKBONE = {"xc": "xception", "ef": "efficientnet_b0"}


class WeightsNotFoundError(FileNotFoundError):
    """No weights were given and no shipped checkpoint exists, or a named weights file is missing."""


@dataclass
class Networks:
    """The two networks of one model and what they are.

    Attributes:
        backbone: per-face extractor, (N, 3, 224, 224) float32 BGR 0..255 → (N, C, 7, 7) float32, eval mode.
        head: :class:`~mintime.models.temporal.MintimeTemporal` (``kind == "mintime"``) or
            :class:`~mintime.models.baseline.FrameBaseline` (``kind == "baseline"``), eval mode.
        kind: ``"mintime"`` or ``"baseline"``.
        model: the ``model`` block of results (JSON-able): ``name``, ``kind``, ``backbone``, ``weights``
            (list of ``{"file", "sha256"}``), ``trained_on``, ``card``, ``caveat`` (None unless demo).
        metadata: the checkpoint's metadata (training config, metrics); empty for the authors' files.
        backbone_stock: the backbone carries its registry's pretrained weights (not stored in the file).
    """

    backbone: nn.Module
    head: nn.Module
    kind: str
    model: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    backbone_stock: bool = False

    @property
    def temporal(self) -> nn.Module:
        """The head (the engine the Triton ``temporal`` model runs)."""
        return self.head

    @property
    def channels(self) -> int:
        """C, channels of the backbone's feature map."""
        return int(self.backbone.out_channels)

    @property
    def num_slots(self) -> int:
        """F, the face slots the head was built for: the temporal config's ``num_frames`` (8 in a ``tiny``
        checkpoint, 16 in the published weights); a baseline's training ``num_slots`` (it pools any count)."""
        config = getattr(self.head, "config", None)
        if config is not None and getattr(config, "num_frames", None):
            return int(config.num_frames)
        training = self.metadata.get("training_config") or {}
        return int(training.get("num_slots") or contract.NUM_SLOTS)


def build_backbone(
    name: str,
    *,
    state: dict[str, Tensor] | None = None,
    weights: str | os.PathLike[str] | None = None,
    pretrained: bool = False,
) -> nn.Module:
    """A backbone by registry name with its weights, in eval mode.

    Args:
        name: registry name (:data:`mintime.models.backbones.BACKBONES`).
        state: a state dict in this module's key layout (project checkpoints), loaded strictly.
        weights: a state-dict file: the authors' extractor (``module.`` / ``efficient_net.`` prefixes removed) or
            a plain state dict in this module's layout, loaded strictly.
        pretrained: the registry's pretrained weights (only ``efficientnet_lite0`` has any here); ignored when
            ``state`` or ``weights`` is given.

    Raises:
        ValueError: unknown name, or pretrained weights that do not exist.
        mintime.checkpoints.CheckpointError: weights that do not fit the module.
    """
    if state is not None and weights is not None:
        raise ValueError("give a backbone state dict or a weights file, not both")
    model = create_backbone(name, pretrained=pretrained and state is None and weights is None)
    if weights is not None:
        strip = "efficient_net." if name.startswith("efficientnet") else None
        state = checkpoints.read_state_dict(weights, strip_through=strip)
        what = f"{name} backbone weights {os.fspath(weights)!r}"
    else:
        what = f"{name} backbone"
    if state is not None:
        checkpoints.load_state_dict_strict(model, state, what=what)
    return model.eval()


def validate_weights_arguments(
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    model_weights: str | os.PathLike[str] | None = None,
    extractor_weights: str | os.PathLike[str] | None = None,
    variant: str | None = None,
) -> None:
    """Check the weights options before any work starts (files exist, the combination is complete).

    Raises:
        ValueError: an incomplete or contradictory combination.
        WeightsNotFoundError: a named file does not exist.
    """
    if model_weights is not None or extractor_weights is not None:
        if checkpoint is not None:
            raise ValueError("give either --checkpoint or the authors' --model-weights/--extractor-weights")
        if model_weights is None or extractor_weights is None or variant not in _VARIANT_BACKBONE:
            raise ValueError(
                "the authors' weights need all of --model-weights, --extractor-weights and --variant xc|ef"
            )
        paths = [model_weights, extractor_weights]
    else:
        paths = [checkpoint] if checkpoint is not None else []
    for p in paths:
        if not Path(p).is_file():
            raise WeightsNotFoundError(f"weights file not found: {p}")
    if not paths and not DEFAULT_CHECKPOINT.is_file():
        raise WeightsNotFoundError(
            "no weights given and the shipped default checkpoint is missing "
            f"({DEFAULT_CHECKPOINT}). Give --checkpoint FILE (train one with `mintime train`), or the authors' "
            "MINTIME-XC files with --model-weights M --extractor-weights E --variant xc."
        )


def load_networks(
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    model_weights: str | os.PathLike[str] | None = None,
    extractor_weights: str | os.PathLike[str] | None = None,
    variant: str | None = None,
) -> Networks:
    """Load the networks of one model (on the CPU, eval mode, float32).

    Args:
        checkpoint: a project checkpoint (``mintime train`` output, MINTIME or baseline). Default: the shipped
            demo checkpoint.
        model_weights: the authors' ``..._Model_checkpointN`` file (TimeSformer state dict).
        extractor_weights: the authors' ``..._Extractor_checkpointN`` file.
        variant: ``xc`` (Xception, MINTIME-XC) or ``ef`` (EfficientNet-B0, MINTIME-EF).

    Raises:
        WeightsNotFoundError: nothing given and no shipped checkpoint, or a missing file.
        ValueError: an incomplete combination of the authors' files.
        mintime.checkpoints.CheckpointError: a file that does not match the architecture.
    """
    validate_weights_arguments(
        checkpoint=checkpoint,
        model_weights=model_weights,
        extractor_weights=extractor_weights,
        variant=variant,
    )
    if model_weights is not None:
        assert extractor_weights is not None and variant is not None
        backbone_name = _VARIANT_BACKBONE[variant]
        head = checkpoints.load_original_temporal(model_weights)
        backbone = build_backbone(backbone_name, weights=extractor_weights)
        model = {
            "name": f"MINTIME-{variant.upper()} (authors' weights)",
            "kind": "mintime",
            "backbone": backbone_name,
            "weights": [_weights_entry(model_weights), _weights_entry(extractor_weights)],
            "trained_on": "ForgeryNet (the authors' published checkpoint; see the MINTIME paper)",
            "card": "https://github.com/davide-coccomini/MINTIME-Multi-Identity-size-iNvariant-TimeSformer",
            "caveat": None,
            "threshold": DEFAULT_THRESHOLD,
        }
        return Networks(backbone, head.eval(), "mintime", model)

    path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    ck = checkpoints.read_checkpoint(path)
    backbone = build_backbone(ck.backbone, state=ck.backbone_state, pretrained=ck.backbone_state is None)
    head = ck.build_head()
    model = _model_block(path, ck)
    logger.info("loaded %s (%s, %s backbone) from %s", model["name"], ck.kind, ck.backbone, path)
    return Networks(backbone, head, ck.kind, model, ck.metadata, ck.backbone_state is None)


def describe_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``model`` block of a project checkpoint without building its networks (what a server reports).

    Raises:
        mintime.checkpoints.CheckpointError: unreadable or not a project checkpoint.
    """
    return _model_block(Path(path), checkpoints.read_checkpoint(path))


def _model_block(path: Path, ck: Any) -> dict[str, Any]:
    meta = ck.metadata
    name = str(meta.get("name") or path.stem)
    return {
        "name": name,
        "kind": ck.kind,
        "backbone": ck.backbone,
        "weights": [_weights_entry(path)],
        "trained_on": meta.get("trained_on") or _trained_on(meta),
        "card": meta.get("model_card"),
        "caveat": DEMO_CAVEAT if name == DEMO_NAME else meta.get("caveat"),
        "threshold": float(meta.get("threshold", DEFAULT_THRESHOLD)),
    }


def _weights_entry(path: str | os.PathLike[str]) -> dict[str, str]:
    return {"file": str(Path(path).resolve()), "sha256": file_digest(path)}


def _trained_on(meta: dict[str, Any]) -> str | None:
    train = meta.get("train_list") or (meta.get("training_config") or {}).get("train_list")
    return f"training list {train}" if train else None
