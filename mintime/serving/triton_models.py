"""The Python-backend models of the repository (importable only inside Triton's Python stub, or with a fake
``triton_python_backend_utils`` in tests).

Each ``model_repository/<model>/1/model.py`` is a subclass of one class here. Every model reads its input and
output names from :mod:`mintime.contract` and answers through :func:`respond_each`: exactly one response per
request, the error of a request in its own response (``INVALID_ARG`` for bad input, ``INTERNAL`` otherwise), so
one bad request never fails the others. ``triton_python_backend_utils`` is looked up on every call rather than
bound at import, so that tests can install a fake module per test (``tests/model_repository/fake_pb_utils.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mintime import contract
from mintime.serving.backend import (
    instance_device,
    json_to_tensor,
    model_parameters,
    resolve_checkpoint,
    split_outputs,
    stack_inputs,
    tensor_to_json,
)

__all__ = [
    "triton_error",
    "BadRequest",
    "respond_each",
    "request_inputs",
    "input_array",
    "output_tensor",
    "NetworkModel",
    "DecodeModel",
    "FaceStageModel",
    "ExplainModel",
]

logger = logging.getLogger(__name__)


class BadRequest(ValueError):
    """The request itself is wrong (shape, content): answered ``INVALID_ARG``."""


def _pb() -> Any:
    import triton_python_backend_utils as pb_utils

    return pb_utils


def triton_error(message: str, code: str = "INTERNAL") -> Any:
    """A ``pb_utils.TritonError`` with the given code name (``INVALID_ARG``, ``INTERNAL``, ...) when supported."""
    pb_utils = _pb()
    codes = getattr(pb_utils.TritonError, code, None)
    return pb_utils.TritonError(message) if codes is None else pb_utils.TritonError(message, codes)


def _invalid_input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this request's input is bad" (answered INVALID_ARG)."""
    errors: list[type[BaseException]] = [ValueError]
    try:
        from mintime.video import VideoDecodeError

        errors.append(VideoDecodeError)
    except ImportError:  # pragma: no cover - av missing
        pass
    return tuple(errors)


def respond_each(
    requests: list[Any], handle: Callable[[Any], dict[str, np.ndarray]], model: str
) -> list[Any]:
    """One response per request: ``handle(request) -> {output name: array}``, errors in the response.

    Args:
        requests: the ``execute`` requests.
        handle: computes one request's outputs (arrays with the batch dimension).
        model: the model name, prefixed to error messages.
    """
    pb_utils = _pb()
    invalid = _invalid_input_errors()
    responses = []
    for request in requests:
        try:
            outputs = handle(request)
            tensors = [output_tensor(name, array) for name, array in outputs.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        except invalid as exc:
            responses.append(pb_utils.InferenceResponse(error=triton_error(f"{model}: {exc}", "INVALID_ARG")))
        except Exception as exc:  # one bad request must not fail the others
            logger.exception("%s: request failed", model)
            message = f"{model}: {type(exc).__name__}: {exc}"
            responses.append(pb_utils.InferenceResponse(error=triton_error(message)))
    return responses


def request_inputs(request: Any, spec: contract.ModelSpec) -> dict[str, Any]:
    """The inputs of ``spec`` of one request (batch dimension included): numpy arrays for host tensors, torch
    tensors (DLPack, no copy) for tensors on a GPU."""
    pb_utils = _pb()
    out = {}
    for t in spec.inputs:
        tensor = pb_utils.get_input_tensor_by_name(request, t.name)
        if tensor is None:
            raise BadRequest(f"missing input {t.name!r}")
        out[t.name] = input_array(tensor)
    return out


def input_array(tensor: Any) -> Any:
    """A ``pb_utils.Tensor`` as numpy (host memory) or as a torch tensor on its GPU (DLPack, no copy)."""
    if hasattr(tensor, "is_cpu") and not tensor.is_cpu():
        from torch.utils import dlpack

        return dlpack.from_dlpack(tensor.to_dlpack())
    return tensor.as_numpy()


def output_tensor(name: str, array: Any) -> Any:
    """A ``pb_utils.Tensor`` of an output: a CUDA torch tensor leaves by DLPack (stays on its GPU), anything else
    as numpy."""
    from mintime.arrays import host, is_torch

    pb_utils = _pb()
    if is_torch(array) and array.is_cuda:
        from torch.utils import dlpack

        return pb_utils.Tensor.from_dlpack(name, dlpack.to_dlpack(array.contiguous()))
    return pb_utils.Tensor(name, host(array))


def _one_video(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop the batch dimension of a request that must carry exactly one video."""
    for name, a in arrays.items():
        if a.ndim == 0 or a.shape[0] != 1:
            raise BadRequest(f"{name}: one video per request (batch 1), got shape {a.shape}")
    return {name: a[0] for name, a in arrays.items()}


def _device(args: dict[str, Any], params: dict[str, str]) -> str:
    return instance_device(
        args["model_instance_kind"], args["model_instance_device_id"], params.get("device", "")
    )


def served_model(repository: Path) -> dict[str, Any] | None:
    """The ``model`` block of what the repository's ``temporal`` network serves (None when unknown): the block
    an exported version recorded, else that of the checkpoint PyTorch loads."""
    from mintime.repository import served_version

    try:
        served = served_version(repository / "temporal")
        if served.model is not None:
            return served.model
        if served.checkpoint is not None:
            from mintime.networks import describe_checkpoint

            return describe_checkpoint(served.checkpoint)
    except Exception:  # the answer still comes, without the block
        logger.warning("cannot tell which model the repository serves", exc_info=True)
    return None


class NetworkModel:
    """``TritonPythonModel`` for one of the two networks (``backbone`` or ``temporal``).

    Runs ``<version>/model.onnx`` with ONNX Runtime when ``mintime export`` wrote one, else PyTorch with the
    checkpoint's weights (:func:`mintime.engines.load_runner`). Dynamic batching hands several requests to one
    ``execute``: they run as one batch and the outputs are split back per request; if the batch fails, each
    request runs alone, so a bad request fails alone. Subclasses set ``NETWORK``.
    """

    NETWORK: str = ""

    @property
    def spec(self) -> contract.ModelSpec:
        return contract.NETWORKS[self.NETWORK]

    def initialize(self, args: dict[str, Any]) -> None:
        from mintime.engines import load_runner

        params = model_parameters(json.loads(args["model_config"]))
        model_dir = Path(args["model_repository"])
        self.runner = load_runner(
            self.NETWORK,
            version_dir=model_dir / str(args["model_version"]),
            runtime=params.get("runtime", "auto") or "auto",
            checkpoint=resolve_checkpoint(params.get("checkpoint", ""), model_dir),
            device=_device(args, params),
        )
        _pb().Logger.log_info(f"{self.NETWORK}: {self.runner.description}")

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = _pb()
        try:
            batch, sizes = stack_inputs([request_inputs(r, self.spec) for r in requests])
            outputs = split_outputs(self.runner(batch), sizes)
        except Exception:  # every request alone: the bad one fails, the others are answered
            return respond_each(requests, lambda r: self.runner(request_inputs(r, self.spec)), self.NETWORK)
        return [
            pb_utils.InferenceResponse(output_tensors=[output_tensor(n, a) for n, a in out.items()])
            for out in outputs
        ]


class DecodeModel:
    """``video_decode``: encoded bytes → the sampled RGB frames (:func:`mintime.video.decode_sampled`).

    Model parameters: ``num_frames`` (default :data:`mintime.config.DEFAULTS`), ``decoder`` (``pyav``: any codec
    FFmpeg reads; ``dali_cpu``: VP8/VP9/MJPEG; ``dali_mixed``: NVDEC on this instance's GPU for the sampled frames,
    PyAV for streams NVDEC refuses) and any :class:`mintime.limits.DecodeLimits` field (the decode budget). An
    input over ``max_bytes`` is refused before it is copied or decoded.
    """

    DECODERS = ("pyav", "dali_cpu", "dali_mixed")

    def initialize(self, args: dict[str, Any]) -> None:
        from mintime.config import DEFAULTS
        from mintime.limits import DecodeLimits

        params = model_parameters(json.loads(args["model_config"]))
        self.num_frames = int(params.get("num_frames") or DEFAULTS.num_frames)
        self.limits = DecodeLimits.from_parameters(params)
        self.decoder = params.get("decoder") or "pyav"
        if self.decoder == "pyav":
            from mintime.video import decode_sampled

            self.decode = lambda data, n: decode_sampled(data, n, limits=self.limits)
        elif self.decoder == "dali_cpu":
            from dali_pipelines.video_decode import decode_with_dali

            self.decode = lambda data, n: decode_with_dali(
                data, n, device="cpu", max_bytes=self.limits.max_bytes
            )
        elif self.decoder == "dali_mixed":
            from dali_pipelines.video_decode import GpuVideoDecoder

            self.decode = GpuVideoDecoder(  # NVDEC frames stay on the GPU and leave by DLPack
                device_id=int(args["model_instance_device_id"]),
                max_bytes=self.limits.max_bytes,
                keep_on_device=True,
                warn=_pb().Logger.log_warn,
            )
            self.decode.prepare()  # a pipeline that cannot be built: one warning now, PyAV for every video
        else:
            raise ValueError(
                f"video_decode: unknown decoder parameter {self.decoder!r} ({', '.join(self.DECODERS)})"
            )
        fallback = getattr(self.decode, "unavailable", None)
        _pb().Logger.log_info(
            f"video_decode: {self.decoder}{f' unavailable, PyAV instead ({fallback})' if fallback else ''}, "
            f"{self.num_frames} frames per video, limits {self.limits.as_dict()}"
        )

    def run(self, request: Any) -> dict[str, np.ndarray]:
        from mintime.serving.backend import clip_to_arrays
        from mintime.video import VideoDecodeError

        video = request_inputs(request, contract.VIDEO_DECODE)[contract.VIDEO]
        if video.ndim != 2 or video.shape[0] != 1:
            raise BadRequest(f"VIDEO must have shape [1, nbytes] (one video per request), got {video.shape}")
        try:
            if video.shape[1] == 0:
                raise VideoDecodeError("empty VIDEO input (0 bytes)")
            if video.nbytes > self.limits.max_bytes:  # before any copy or decode
                raise VideoDecodeError(
                    f"too large: {video.nbytes} bytes exceeds max_bytes={self.limits.max_bytes}"
                )
            clip = self.decode(video[0], self.num_frames)
        except VideoDecodeError as exc:
            raise VideoDecodeError(f"cannot decode the video: {exc}") from exc
        return {name: a[None] for name, a in clip_to_arrays(clip).items()}

    def execute(self, requests: list[Any]) -> list[Any]:
        return respond_each(requests, self.run, "video_decode")


class FaceStageModel:
    """``face_pipeline``: sampled frames → the face-stage outputs (:class:`mintime.faces.stage.FaceStage`).

    A video without a usable face is not an error: the slots are empty, ``face_slots_identity`` is all -1 and
    ``face_slots_json`` says status ``no_face``. Any :class:`mintime.config.PipelineConfig` field can be set as a
    model parameter of the same name.

    Dynamic batching hands several requests (videos of any size: the frame inputs allow ragged batches) to one
    ``execute``: their clips run through :meth:`mintime.faces.stage.FaceStage.batch` together (shared detection
    and embedding passes). A request whose inputs are bad fails alone; if the shared pass fails, every request
    runs alone, so the culprit fails alone too.
    """

    def initialize(self, args: dict[str, Any]) -> None:
        from mintime.config import from_parameters
        from mintime.faces.stage import FaceStage

        params = model_parameters(json.loads(args["model_config"]))
        self.cfg = from_parameters(params, device=_device(args, params))
        self.stage = FaceStage(self.cfg)
        _ = self.stage.detector, self.stage.embedder  # load the networks now, not on the first request
        _pb().Logger.log_info(f"face_pipeline: {self.cfg}")

    def clip(self, request: Any) -> Any:
        """The decoded clip a request carries (:class:`mintime.video.DecodedClip`)."""
        from mintime.serving.backend import clip_from_arrays

        arrays = _one_video(request_inputs(request, contract.FACE_PIPELINE))
        return clip_from_arrays(*(arrays[t.name] for t in contract.VIDEO_DECODE.outputs))

    @staticmethod
    def outputs(faces: Any) -> dict[str, np.ndarray]:
        """The face-stage outputs of one video, batch dimension 1."""
        outputs = {name: a[None] for name, a in faces.tensors.as_inputs().items()}
        outputs[contract.FACE_JSON] = json_to_tensor(faces.to_json())
        return outputs

    def run(self, request: Any) -> dict[str, np.ndarray]:
        return self.outputs(self.stage(self.clip(request)))

    def execute(self, requests: list[Any]) -> list[Any]:
        if len(requests) == 1:
            return respond_each(requests, self.run, "face_pipeline")
        clips: dict[int, Any] = {}
        for i, request in enumerate(requests):
            try:
                clips[i] = self.clip(request)
            except Exception:  # answered alone below, with its precise error
                continue
        try:
            found = self.stage.batch(list(clips.values()))
        except Exception:  # the shared pass failed: every request alone, the culprit fails alone
            logger.exception("face_pipeline: batched pass failed, answering the requests one by one")
            return respond_each(requests, self.run, "face_pipeline")
        done = {id(requests[i]): faces for i, faces in zip(clips, found, strict=True)}
        return respond_each(
            requests,
            lambda r: self.outputs(done[id(r)]) if id(r) in done else self.run(r),
            "face_pipeline",
        )


class ExplainModel:
    """``explain``: logit + CLS attention + slot identities + ``face_slots_json`` → the verdict.

    ``RESULT_JSON`` is the same object as ``mintime predict --json`` (without the ``video`` key: the server never
    sees the file name); ``FAKE_PROBABILITY`` is NaN when no face was found.
    """

    def initialize(self, args: dict[str, Any]) -> None:
        import mintime.explain  # noqa: F401  (import once here, not on the first request)

        self.model = served_model(Path(args["model_repository"]).parent)
        name = self.model["name"] if self.model else "unknown"
        _pb().Logger.log_info(f"explain: results name the model {name!r}")

    def run(self, request: Any) -> dict[str, np.ndarray]:
        from mintime.serving.backend import explain_outputs

        arrays = request_inputs(request, contract.EXPLAIN)
        return explain_outputs(
            tensor_to_json(arrays[contract.FACE_JSON]),
            arrays[contract.TEMPORAL_LOGIT],
            arrays[contract.TEMPORAL_CLS_ATTENTION],
            arrays[contract.SLOT_IDENTITY],
            self.model,
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        return respond_each(requests, self.run, "explain")
