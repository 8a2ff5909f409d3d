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
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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

    def decode(self, source: Any) -> Any:
        """Decode ``num_frames`` frames of a video (path, bytes): a :class:`mintime.video.DecodedClip`."""
        from mintime.video import decode_sampled

        return decode_sampled(source, self.cfg.num_frames)

    def analyze(self, source: Any) -> FaceStageResult:
        """Decode ``num_frames`` frames of a video (path, bytes) and run the face stage."""
        return self.stage(self.decode(source))

    def decoded(self, sources: Iterable[Any], *, prefetch: int = 1) -> Iterator[tuple[Any, Any]]:
        """``(source, DecodedClip or the exception its decode raised)`` in input order, decoding up to ``prefetch``
        videos ahead in one background thread while the caller runs the face stage and the networks on the
        current one (PyAV releases the GIL while it decodes). At most ``prefetch + 1`` decoded clips are held at
        once; ``prefetch=0`` decodes each video only when it is asked for."""
        if prefetch <= 0:
            for src in sources:
                try:
                    yield src, self.decode(src)
                except Exception as exc:  # the caller reports it with the video's name
                    yield src, exc
            return
        it = iter(sources)
        pending: deque[tuple[Any, Future]] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mintime-decode") as pool:

            def fill() -> None:
                while len(pending) < prefetch + 1:
                    try:
                        src = next(it)
                    except StopIteration:
                        return
                    pending.append((src, pool.submit(self.decode, src)))

            fill()
            while pending:
                src, future = pending.popleft()
                try:
                    clip = future.result()
                except Exception as exc:  # the caller reports it with the video's name
                    clip = exc
                fill()  # the next decode starts before the caller works on this one
                yield src, clip
                del clip

    def predict_decoded(self, clip: Any) -> dict[str, Any]:
        """Analyse and classify one decoded clip → the result dict of ``mintime predict --json``."""
        faces = self.stage(clip)
        return render_result(faces.to_json(), self.explain(faces), self.model)

    def run_networks(self, faces: FaceStageResult) -> tuple[float, np.ndarray]:
        """(logit, cls_attention (2, heads, 785) float32) of one analysed video."""
        out = self.engines({name: a[None] for name, a in faces.tensors.as_inputs().items()})
        return float(out[contract.TEMPORAL_LOGIT][0, 0]), out[contract.TEMPORAL_CLS_ATTENTION][0]

    def explain(self, faces: FaceStageResult) -> Explanation:
        """The networks and the explanation of one analysed video (no network runs when no face was found)."""
        if not faces.ok:
            return explain_video(float("nan"), np.zeros(0), faces.tensors.slot_identity)
        logit, attention = self.run_networks(faces)
        return explain_video(
            logit, attention, faces.tensors.slot_identity, threshold=model_threshold(self.model)
        )

    def predict(self, source: Any) -> dict[str, Any]:
        """Decode, analyse and classify one video → the result dict of ``mintime predict --json``."""
        return self.predict_decoded(self.decode(source))
