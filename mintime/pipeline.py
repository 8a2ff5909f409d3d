"""The in-process pipeline: video → faces → identities → slots → backbone → temporal model → verdict.

This module composes the stages; each stage lives in its own module and is the one implementation shared with
training and with the Triton Python models:

* decode & sample: :func:`mintime.video.decode_sampled`
* detect: :class:`mintime.faces.mtcnn.MTCNN` (batched over the sampled frames)
* crops: :mod:`mintime.faces.crops` (square 1/3-margin crop from the face's own frame)
* identities: :mod:`mintime.faces.embedder` + :func:`mintime.faces.identities.cluster_identities`
* slots: :func:`mintime.slots.build_slots`
* engines: :mod:`mintime.engines` (PyTorch or ONNX Runtime, same interface; also the Triton Python models')
* explain: :func:`finalize` (probability, label, per-identity scores)

The Triton ensemble runs the same functions: ``face_pipeline`` calls :meth:`FaceAnalyzer.analyze`, ``explain``
calls :func:`finalize`, so the server's answer equals ``mintime predict --json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mintime import contract
from mintime.engines import Engines, OnnxEngines, TorchEngines
from mintime.slots import FaceRecord, NoFaceError, SlotPlan, build_slots

logger = logging.getLogger(__name__)

__all__ = [
    "PipelineConfig",
    "FaceAnalyzer",
    "FaceAnalysis",
    "Engines",
    "TorchEngines",
    "OnnxEngines",
    "LoadedModels",
    "load_models",
    "finalize",
    "Predictor",
    "DEMO_CHECKPOINT",
    "WeightsNotFoundError",
]

#: The shipped demo checkpoint (trained on a synthetic forgery benchmark; see mintime/weights/MODEL_CARD.md).
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "demo.pt"
RESULT_FORMAT = "mintime.result.v1"


class WeightsNotFoundError(FileNotFoundError):
    """No weights were given and no shipped checkpoint exists."""


@dataclass
class PipelineConfig:
    """Settings of the face pipeline (everything before the networks).

    Attributes:
        num_frames: frames sampled uniformly over the whole clip (detection runs on these only).
        detect_scale: resolution factor for MTCNN (the original detected at half resolution).
        num_slots: face slots fed to the temporal model (16 for the published weights).
        max_identities: identities kept, largest faces first (2 in the original config).
        embedder: "dlib" (installable offline) or "facenet" (needs ``embedder_weights``).
        mask_regime: "correct" (dummy slots masked, default) or "all_true" (the original training loader).
        min_cluster_ratio: identities with fewer faces than this fraction of the largest one are dropped.
        min_faces: identities seen on fewer sampled frames are dropped (one-frame false detections).
        min_size_ratio: identities whose mean face side is below this fraction of the largest are dropped.
        thresholds: MTCNN P/R/O-Net score thresholds (the original's defaults).
    """

    num_frames: int = 16
    detect_scale: float = 0.5
    num_slots: int = contract.NUM_SLOTS
    max_identities: int = 2
    embedder: str = "dlib"
    embedder_weights: str | None = None
    device: str = "cpu"
    mask_regime: str = "correct"
    min_cluster_ratio: float = 0.2
    min_faces: int = 2
    min_size_ratio: float = 0.4
    thresholds: tuple[float, float, float] = (0.85, 0.95, 0.95)
    min_face_size: int = 20


# ---------------------------------------------------------------------------------------------------------------
# Face analysis (decode output → slots)
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class FaceAnalysis:
    """What the face pipeline hands to the networks, and what it found.

    Attributes:
        status: ``contract.STATUS_OK`` or ``contract.STATUS_NO_FACE``.
        faces: (F, 3, 224, 224) float32, BGR 0..255; zeros on dummy slots.
        plan: the slot plan (None when no face was found).
        info: JSON-able description (video, identities with frames and boxes, slot map).
    """

    status: str
    faces: np.ndarray
    plan: SlotPlan | None
    info: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``contract.FACE_PIPELINE`` outputs without batch dim (json excluded)."""
        if self.plan is None:
            arrays = _empty_slot_arrays(self.faces.shape[0])
        else:
            arrays = self.plan.as_arrays()
        return {
            "face_slots_faces": self.faces.astype(np.float32, copy=False),
            "face_slots_mask": arrays["mask"].astype(bool),
            "face_slots_identities_mask": arrays["identities_mask"].astype(bool),
            "face_slots_size_ids": arrays["size_ids"].astype(np.int64),
            "face_slots_positions": arrays["positions"].astype(np.int64),
        }

    def to_json(self) -> dict[str, Any]:
        return self.info


def _empty_slot_arrays(num_slots: int) -> dict[str, np.ndarray]:
    """Arrays for a video with no face: one visible dummy slot so attention stays well defined."""
    mask = np.zeros(num_slots, bool)
    mask[0] = True
    return {
        "mask": mask,
        "identities_mask": np.ones((num_slots, num_slots), bool),
        "size_ids": np.zeros(num_slots, np.int64),
        "positions": np.zeros(1 + num_slots * contract.NUM_PATCHES, np.int64),
    }


def _clip_info(clip: Any) -> dict[str, Any]:
    return {
        "fps": round(float(clip.fps), 3),
        "width": int(clip.width),
        "height": int(clip.height),
        "total_frames": int(clip.total_frames),
        "sampled_frames": [int(i) for i in clip.indices],
    }


class FaceAnalyzer:
    """Detect faces on the sampled frames, group them into identities and fill the slots.

    Heavy models (MTCNN, the embedder) are created on first use, so constructing this is cheap.
    """

    def __init__(self, cfg: PipelineConfig | None = None) -> None:
        self.cfg = cfg or PipelineConfig()
        self._detector = None
        self._embedder = None

    @property
    def detector(self):
        if self._detector is None:
            from mintime.faces.mtcnn import MTCNN

            self._detector = MTCNN(
                device=self.cfg.device, thresholds=self.cfg.thresholds, min_face_size=self.cfg.min_face_size
            )
        return self._detector

    @property
    def embedder(self):
        if self._embedder is None:
            from mintime.faces.embedder import create_embedder

            self._embedder = create_embedder(
                self.cfg.embedder, weights=self.cfg.embedder_weights, device=self.cfg.device
            )
        return self._embedder

    def analyze(self, clip: Any, timings: dict[str, float] | None = None) -> FaceAnalysis:
        """Run detect → crops → identities → slots on a decoded clip.

        Args:
            clip: a :class:`mintime.video.DecodedClip` (frames (T, H, W, 3) uint8 RGB, indices (T,)).
            timings: if given, receives seconds per stage (``detect``, ``identities``, ``crops_slots``).

        Returns:
            A :class:`FaceAnalysis`; ``status == "no_face"`` when no identity survives.
        """
        from mintime.faces.crops import crop_face, resize_for_model, to_model_input
        from mintime.faces.identities import cluster_identities

        cfg = self.cfg
        frames = clip.frames
        info: dict[str, Any] = {"clip": _clip_info(clip)}
        timings = {} if timings is None else timings
        t0 = time.perf_counter()
        detections = self.detector.detect(frames, scale=cfg.detect_scale)
        timings["detect"] = time.perf_counter() - t0

        # flatten detections: one row per face
        frame_pos, boxes, scores = [], [], []
        for t, det in enumerate(detections):
            for k in range(len(det.boxes)):
                frame_pos.append(t)
                boxes.append(np.asarray(det.boxes[k], np.float32))
                scores.append(float(det.scores[k]))
        info["detections"] = len(boxes)
        if not boxes:
            return self._no_face(info, "no face detected in the sampled frames")

        t0 = time.perf_counter()
        boxes_arr = np.stack(boxes)
        frame_pos_arr = np.asarray(frame_pos, np.int64)
        frame_ids = np.asarray(clip.indices, np.int64)[frame_pos_arr]
        embeddings = self.embedder.embed([frames[t] for t in frame_pos], list(boxes_arr), list(frame_ids))
        clusters = cluster_identities(
            embeddings,
            boxes_arr,
            frame_ids,
            frame_size=(clip.width, clip.height),
            distance_threshold=self.embedder.threshold,
            metric=self.embedder.metric,
            min_cluster_ratio=cfg.min_cluster_ratio,
            min_faces=cfg.min_faces,
            min_size_ratio=cfg.min_size_ratio,
        )
        timings["identities"] = time.perf_counter() - t0
        if not clusters.identities:
            return self._no_face(info, "faces were detected but none recurs enough to form an identity")
        t0 = time.perf_counter()

        # crops of every clustered face, from the face's own frame
        crops: dict[int, np.ndarray] = {}
        identities: list[list[FaceRecord]] = []
        for members in clusters.identities:
            records = []
            for i in members:
                i = int(i)
                crop = crop_face(frames[frame_pos_arr[i]], boxes_arr[i])
                crops[i] = crop
                crop_h, crop_w = crop.shape[:2]
                records.append(FaceRecord(frame_index=int(frame_ids[i]), crop_h=crop_h, crop_w=crop_w, key=i))
            identities.append(records)

        try:
            plan = build_slots(
                identities,
                frame_size=(clip.width, clip.height),
                num_slots=cfg.num_slots,
                max_identities=cfg.max_identities,
                mask_regime=cfg.mask_regime,
            )
        except NoFaceError as exc:
            return self._no_face(info, str(exc))

        size = contract.IMAGE_SIZE
        faces = np.zeros((cfg.num_slots, 3, size, size), np.float32)
        real = [(s, rec.key) for s, rec in enumerate(plan.faces) if rec is not None]
        if real:
            batch = to_model_input(np.stack([resize_for_model(crops[k], size) for _, k in real]))
            for j, (s, _) in enumerate(real):
                faces[s] = batch[j]

        kept = list(plan.identity_order)
        slot_identity = np.asarray(plan.slot_identity)
        identities_json = []
        for rank, members in enumerate(clusters.identities):
            kept_pos = kept.index(rank) if rank in kept else None
            identities_json.append(
                {
                    "id": rank,
                    "kept": kept_pos is not None,
                    "num_faces": len(members),
                    "faces": [
                        {
                            "frame": int(frame_ids[i]),
                            "box": [round(float(v), 2) for v in boxes_arr[i]],
                            "score": round(scores[int(i)], 4),
                        }
                        for i in members
                    ],
                    "slots": []
                    if kept_pos is None
                    else [int(s) for s in np.flatnonzero(slot_identity == kept_pos)],
                }
            )
        info.update(
            status=contract.STATUS_OK,
            identities=identities_json,
            slots=[
                {
                    "slot": s,
                    "identity": int(kept[slot_identity[s]]),
                    "frame": int(plan.frame_indices[s]),
                    "dummy": rec is None,
                }
                for s, rec in enumerate(plan.faces)
            ],
        )
        timings["crops_slots"] = time.perf_counter() - t0
        return FaceAnalysis(status=contract.STATUS_OK, faces=faces, plan=plan, info=info)

    def _no_face(self, info: dict[str, Any], reason: str) -> FaceAnalysis:
        logger.info("no face: %s", reason)
        size = contract.IMAGE_SIZE
        info.update(status=contract.STATUS_NO_FACE, reason=reason, identities=[], slots=[])
        return FaceAnalysis(
            status=contract.STATUS_NO_FACE,
            faces=np.zeros((self.cfg.num_slots, 3, size, size), np.float32),
            plan=None,
            info=info,
        )


# ---------------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class LoadedModels:
    """The two networks and what they are (source, training data, variant)."""

    backbone: Any
    temporal: Any
    info: dict[str, Any]


def load_models(
    *,
    checkpoint: str | os.PathLike | None = None,
    model_weights: str | os.PathLike | None = None,
    extractor_weights: str | os.PathLike | None = None,
    variant: str | None = None,
    device: str = "cpu",
) -> LoadedModels:
    """Load the networks from a project checkpoint or from the authors' checkpoint pair.

    Args:
        checkpoint: a project checkpoint (``mintime train`` output). Default: the shipped demo checkpoint.
        model_weights: the authors' ``..._Model_checkpointN`` file (TimeSformer state dict).
        extractor_weights: the authors' ``..._Extractor_checkpointN`` file.
        variant: ``xc`` (Xception, MINTIME-XC) or ``ef`` (EfficientNet-B0, MINTIME-EF).

    Raises:
        WeightsNotFoundError: nothing given and no shipped checkpoint, with instructions.
        mintime.checkpoints.CheckpointError: a file that does not match the architecture.
    """
    from mintime import checkpoints
    from mintime.models import create_backbone, create_temporal_from_config

    if model_weights is not None or extractor_weights is not None:
        if model_weights is None or extractor_weights is None or variant not in ("xc", "ef"):
            raise ValueError(
                "the authors' weights need all of --model-weights, --extractor-weights and --variant xc|ef"
            )
        for p in (model_weights, extractor_weights):
            if not Path(p).is_file():
                raise WeightsNotFoundError(f"weights file not found: {p}")
        backbone_name = "xception" if variant == "xc" else "efficientnet_b0"
        temporal = checkpoints.load_original_temporal(model_weights)
        backbone = create_backbone(backbone_name, pretrained=False)
        state = checkpoints.read_state_dict(
            extractor_weights, strip_through="efficient_net." if variant == "ef" else None
        )
        checkpoints.load_state_dict_strict(backbone, state, what=f"{backbone_name} extractor")
        info = {
            "source": "original",
            "variant": variant,
            "model_weights": str(model_weights),
            "extractor_weights": str(extractor_weights),
            "backbone": backbone_name,
        }
        return LoadedModels(backbone.eval(), temporal.eval(), info)

    path = Path(checkpoint) if checkpoint is not None else DEMO_CHECKPOINT
    if not path.is_file():
        if checkpoint is None:
            raise WeightsNotFoundError(
                "no weights given and the shipped demo checkpoint is missing "
                f"({DEMO_CHECKPOINT}). Give --checkpoint FILE (train one with `mintime train`), or the authors' "
                "MINTIME-XC files with --model-weights M --extractor-weights E --variant xc."
            )
        raise WeightsNotFoundError(f"checkpoint not found: {path}")
    ck = checkpoints.load_checkpoint(path)
    backbone = create_backbone(ck.backbone, pretrained=ck.backbone_state is None)
    if ck.backbone_state is not None:
        checkpoints.load_state_dict_strict(backbone, ck.backbone_state, what=f"{ck.backbone} backbone")
    temporal = create_temporal_from_config(ck.temporal_config)
    checkpoints.load_state_dict_strict(temporal, ck.temporal_state, what="temporal model")
    info = {"source": "checkpoint", "checkpoint": str(path), "backbone": ck.backbone, "metadata": ck.metadata}
    return LoadedModels(backbone.eval(), temporal.eval(), info)


# ---------------------------------------------------------------------------------------------------------------
# Explain
# ---------------------------------------------------------------------------------------------------------------
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def finalize(
    analysis_json: dict[str, Any], logit: float | None, cls_attention: np.ndarray | None
) -> dict[str, Any]:
    """Turn the network outputs into the result JSON of ``mintime predict --json``.

    Args:
        analysis_json: :meth:`FaceAnalysis.to_json` (also what the Triton ``face_pipeline`` step emits).
        logit: the temporal model's logit for this video (ignored when no face was found).
        cls_attention: (2, heads, 1+F*P) float32, last-layer CLS attention rows (space, time).

    Returns:
        A JSON-able dict with ``fake_probability`` (None when no face), ``label``, ``status``,
        ``identities`` (each with ``fake_score``, ``attention``, faces, slots) and the per-slot scores.
    """
    from mintime.explain import identity_fake_scores, identity_scores, slot_scores

    result: dict[str, Any] = {"format": RESULT_FORMAT, **{k: v for k, v in analysis_json.items()}}
    status = analysis_json.get("status", contract.STATUS_OK)
    if status != contract.STATUS_OK or logit is None:
        result.update(fake_probability=None, label="no_face", logit=None)
        return result

    p = _sigmoid(float(logit))
    slots = analysis_json["slots"]
    num_slots = len(slots)
    mask = np.array([not s["dummy"] for s in slots], bool)
    kept = [ident for ident in analysis_json["identities"] if ident["kept"]]
    # slot → position of its identity among the kept ones
    kept_ids = [ident["id"] for ident in kept]
    slot_identity = np.array([kept_ids.index(s["identity"]) for s in slots], np.int64)
    scores = slot_scores(np.asarray(cls_attention, np.float32), num_slots=num_slots, mask=mask)
    id_attention = identity_scores(scores["combined"], slot_identity, len(kept))
    id_fake = identity_fake_scores(p, id_attention)

    identities = []
    j = 0
    for ident in analysis_json["identities"]:
        ident = dict(ident)
        if ident["kept"]:
            ident["attention"] = round(float(id_attention[j]), 6)
            ident["fake_score"] = round(float(id_fake[j]), 6)
            j += 1
        else:
            ident["attention"] = None
            ident["fake_score"] = None
        identities.append(ident)
    result.update(
        fake_probability=round(p, 6),
        logit=round(float(logit), 6),
        label="fake" if p > 0.5 else "pristine",
        identities=identities,
        slot_attention=[round(float(v), 6) for v in scores["combined"]],
    )
    return result


def result_to_json(result: dict[str, Any]) -> str:
    """Serialise a result (one line, stable key order)."""
    return json.dumps(result, sort_keys=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------------------------
# Predictor
# ---------------------------------------------------------------------------------------------------------------
class Predictor:
    """End-to-end in-process prediction (``mintime predict``).

    Args:
        cfg: face-pipeline settings.
        engines: :class:`TorchEngines` or :class:`OnnxEngines`.
    """

    def __init__(self, cfg: PipelineConfig, engines: Any, analyzer: FaceAnalyzer | None = None) -> None:
        self.cfg = cfg
        self.engines = engines
        self.analyzer = analyzer or FaceAnalyzer(cfg)

    def analyze(self, source: Any) -> FaceAnalysis:
        from mintime.video import decode_sampled

        clip = decode_sampled(source, self.cfg.num_frames)
        return self.analyzer.analyze(clip)

    def run_networks(self, analysis: FaceAnalysis) -> tuple[float, np.ndarray]:
        """(logit, cls_attention (2, heads, 785)) for one analysed video."""
        a = analysis.arrays()
        feats = self.engines.features(a["face_slots_faces"][None])
        logits, attn = self.engines.temporal_forward(
            feats,
            a["face_slots_mask"][None],
            a["face_slots_identities_mask"][None],
            a["face_slots_size_ids"][None],
            a["face_slots_positions"][None],
        )
        return float(logits[0, 0]), attn[0]

    def predict(self, source: Any) -> dict[str, Any]:
        """Decode, analyse and classify one video (path, bytes or uint8 array) → result dict."""
        analysis = self.analyze(source)
        if analysis.status != contract.STATUS_OK:
            return finalize(analysis.to_json(), None, None)
        logit, attn = self.run_networks(analysis)
        return finalize(analysis.to_json(), logit, attn)
