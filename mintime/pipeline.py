"""The in-process pipeline (``mintime predict``): video → face stage → backbone → temporal model → explanation.

This module only composes the stages; each lives in its own module and is the one implementation shared with
training and with the Triton Python models:

| stage | module | Triton model |
|---|---|---|
| decode & sample | :func:`mintime.video.decode_sampled` | ``video_decode`` |
| faces, identities, slots | :class:`mintime.faces.stage.FaceStage` | ``face_pipeline`` |
| backbone, temporal | :class:`mintime.engines.Engines` (PyTorch or ONNX Runtime) | ``backbone``, ``temporal`` |
| explanation | :func:`mintime.explain.explain_video` + :func:`mintime.explain.render_result` | ``explain`` |

so the server's answer equals ``mintime predict --json``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mintime import contract
from mintime.config import PipelineConfig
from mintime.engines import Engines
from mintime.explain import Explanation, explain_video, model_threshold, render_result
from mintime.faces.stage import FaceStage, FaceStageResult

__all__ = ["Predictor"]

logger = logging.getLogger(__name__)


class Predictor:
    """End-to-end in-process prediction.

    Args:
        cfg: face-stage settings.
        engines: the two networks (:func:`mintime.engines.TorchEngines` or :func:`~mintime.engines.OnnxEngines`).
        stage: a face stage to reuse (default: a new one with ``cfg``).
        model: the ``model`` block every result carries (:attr:`mintime.networks.Networks.model`).
    """

    def __init__(
        self,
        cfg: PipelineConfig,
        engines: Engines,
        stage: FaceStage | None = None,
        model: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.engines = engines
        self.stage = stage or FaceStage(cfg)
        self.model = model

    def analyze(self, source: Any) -> FaceStageResult:
        """Decode ``num_frames`` frames of a video (path, bytes) and run the face stage."""
        from mintime.video import decode_sampled

        return self.stage(decode_sampled(source, self.cfg.num_frames))

    def run_networks(self, faces: FaceStageResult) -> tuple[float, np.ndarray]:
        """(logit, cls_attention (2, heads, 785) float32) of one analysed video."""
        out = self.engines({name: a[None] for name, a in faces.tensors.as_inputs().items()})
        return float(out[contract.TEMPORAL_LOGIT][0, 0]), out[contract.TEMPORAL_CLS_ATTENTION][0]

    def explain(self, faces: FaceStageResult) -> Explanation:
        """The networks and the explanation of one analysed video (no network runs when no face was found)."""
        if not faces.ok:
            return explain_video(float("nan"), np.zeros(0), faces.tensors.slot_identity)
        logit, attention = self.run_networks(faces)
        return explain_video(logit, attention, faces.tensors.slot_identity, threshold=model_threshold(self.model))

    def predict(self, source: Any) -> dict[str, Any]:
        """Decode, analyse and classify one video → the result dict of ``mintime predict --json``."""
        faces = self.analyze(source)
        return render_result(faces.to_json(), self.explain(faces), self.model)
