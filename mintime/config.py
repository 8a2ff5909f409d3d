"""Settings of the face stage, with the one default of each setting.

Everything that needs a default reads it from here: ``mintime predict`` and ``mintime preprocess`` (their CLI
defaults), the decoders (``mintime.video``, ``dali_pipelines``), the Triton Python models (their parameters
fall back to these values) and the committed ``config.pbtxt`` files (a test checks that their parameters equal
these defaults). Imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mintime import contract

__all__ = [
    "PipelineConfig",
    "DEFAULTS",
    "TRAINING_NUM_FRAMES",
    "EMBEDDERS",
    "MASK_REGIMES",
    "from_parameters",
]

#: Face embedders the identity step can use.
EMBEDDERS = ("resnet", "dlib", "facenet")
#: "correct" hides dummy slots; "all_true" reproduces the original training loader.
MASK_REGIMES = ("correct", "all_true")


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the face stage (everything before the networks).

    Attributes:
        num_frames: frames sampled uniformly over the whole clip (detection runs on these only).
        detect_scale: resolution factor for MTCNN (the original detected at half resolution).
        num_slots: face slots fed to the temporal model (16 for the published weights).
        max_identities: identities kept, largest faces first (2 in the original config).
        embedder: one of :data:`EMBEDDERS`: "resnet" (dlib's face-recognition ResNet as a batched PyTorch network,
            faces aligned on the device from MTCNN's landmarks, tracklets first), "dlib" (the reference: dlib's
            own alignment and network, every detection embedded) or "facenet" (needs ``embedder_weights``).
        faces_per_tracklet: faces embedded per tracklet ("resnet"; the rest of a tracklet follows its faces).
        embedder_weights: FaceNet InceptionResnetV1 weights file (with ``embedder="facenet"``).
        device: torch device of the detector and the embedder ("cpu", "cuda:N").
        mask_regime: one of :data:`MASK_REGIMES`.
        min_cluster_ratio: identities with fewer faces than this fraction of the largest one are dropped.
        min_faces: identities seen on fewer sampled frames are dropped (one-frame false detections).
        min_size_ratio: identities whose mean face side is below this fraction of the largest are dropped.
        thresholds: MTCNN P/R/O-Net score thresholds (the original's defaults).
        min_face_size: smallest face side MTCNN looks for, in detector pixels.
        relaxed_retry: when the default pass finds no identity, or none seen on at least
            ``relaxed_min_coverage`` of the sampled frames, one more pass on contrast-stretched frames at
            ``relaxed_thresholds`` and ``relaxed_detect_scale`` (hard footage: dark, small or blurred faces); the
            pass whose best identity is seen on more frames wins. The result says which pass it was.
        relaxed_min_coverage: fraction of the sampled frames the best identity must cover to skip the retry.
        relaxed_thresholds: MTCNN thresholds of the relaxed pass.
        relaxed_detect_scale: detection resolution factor of the relaxed pass.
    """

    num_frames: int = 16
    detect_scale: float = 0.5
    num_slots: int = contract.NUM_SLOTS
    max_identities: int = 2
    embedder: str = "resnet"
    faces_per_tracklet: int = 4
    embedder_weights: str | None = None
    device: str = "cpu"
    mask_regime: str = "correct"
    min_cluster_ratio: float = 0.2
    min_faces: int = 2
    min_size_ratio: float = 0.4
    thresholds: tuple[float, float, float] = (0.85, 0.95, 0.95)
    min_face_size: int = 20
    relaxed_retry: bool = True
    relaxed_min_coverage: float = 0.25
    relaxed_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    relaxed_detect_scale: float = 1.0

    def replace(self, **changes: Any) -> PipelineConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


#: The defaults, as an instance.
DEFAULTS = PipelineConfig()
#: Frames ``mintime preprocess`` samples per training video (more faces per identity for training than the
#: ``num_frames`` inference samples; the shipped demo weights were trained on such crops).
TRAINING_NUM_FRAMES = 32


def _convert(text: str, default: Any, name: str) -> Any:
    """Parse a string parameter into the type of the field's default value."""
    if isinstance(default, bool):
        if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"parameter {name!r}: expected a boolean, got {text!r}")
        return text.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, tuple):
        parts = [p for p in text.replace(",", " ").split() if p]
        kind = type(default[0]) if default else float
        if default and len(parts) != len(default):
            raise ValueError(f"parameter {name!r}: expected {len(default)} values, got {text!r}")
        return tuple(kind(p) for p in parts)
    if default is None:
        return text or None
    return text


def from_parameters(params: dict[str, str], *, device: str) -> PipelineConfig:
    """A :class:`PipelineConfig` from string parameters named like its fields (Triton model parameters).

    Names that are not fields (``checkpoint``, ``runtime``, ...) are ignored; the device is the caller's.

    Raises:
        ValueError: a value that does not parse as the field's type.
    """
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(PipelineConfig):
        if f.name in params and f.name != "device":
            changes[f.name] = _convert(params[f.name], getattr(DEFAULTS, f.name), f.name)
    changes["device"] = device
    return DEFAULTS.replace(**changes)
