"""Pure helpers of the Triton Python-backend models (``model_repository/*/1/model.py``).

Nothing here imports ``triton_python_backend_utils``: the ``model.py`` files own the request loop and the
``pb_utils`` objects, and call these functions for everything else, so the logic is unit-tested without a server.
Heavy modules (torch, av) are imported inside the functions that need them.

Weights of the ``backbone`` and ``temporal`` models (:func:`resolve_checkpoint`): the model parameter
``checkpoint`` (a path, relative to the model's folder), else the environment variable ``MINTIME_CHECKPOINT``
(seen by the server process), else the shipped default checkpoint.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from mintime import contract
from mintime.arrays import concatenate, contiguous, host, is_torch, torch_uint8
from mintime.repository import CHECKPOINT_ENV

__all__ = [
    "CHECKPOINT_ENV",
    "model_parameters",
    "instance_device",
    "resolve_checkpoint",
    "clip_to_arrays",
    "clip_from_arrays",
    "json_to_tensor",
    "tensor_to_json",
    "explain_outputs",
    "stack_inputs",
    "split_outputs",
]


def model_parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters { key: ... value { string_value: ... } }`` of a model config, as a plain dict.

    Args:
        model_config: the config as the Python backend gives it (``json.loads(args["model_config"])``).
    """
    params = model_config.get("parameters") or {}
    return {str(k): str(v.get("string_value", "")) for k, v in params.items()}


def instance_device(kind: str, device_id: int | str, requested: str = "") -> str:
    """The torch device of a model instance.

    Args:
        kind: ``args["model_instance_kind"]`` (``"CPU"``, ``"GPU"``, ...).
        device_id: ``args["model_instance_device_id"]``.
        requested: a ``device`` model parameter: ``"cpu"`` forces the CPU; ``"cuda"`` (without index) follows
            the instance's GPU; ``"cuda:N"`` is taken as given; ``""`` follows the instance kind.

    Returns:
        ``"cpu"`` or ``"cuda:<id>"``.
    """
    requested = requested.strip().lower()
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda:"):
        return requested
    if kind.upper() == "GPU" or requested == "cuda":
        return f"cuda:{int(device_id)}"
    return "cpu"


def resolve_checkpoint(value: str, model_dir: str | os.PathLike) -> str | None:
    """The checkpoint a model should load: parameter, else ``$MINTIME_CHECKPOINT``, else None (the shipped default weights).

    Args:
        value: the ``checkpoint`` model parameter ("" = not set); a relative path is taken relative to
            ``model_dir`` (the model's folder in the repository, ``args["model_repository"]``).
        model_dir: the model's folder.

    Raises:
        FileNotFoundError: the parameter or the variable names a file that does not exist.
    """
    value = value.strip()
    origin = "model parameter 'checkpoint'"
    if not value:
        value = os.environ.get(CHECKPOINT_ENV, "").strip()
        origin = f"${CHECKPOINT_ENV}"
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(model_dir) / path
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint from {origin} not found: {path}")
    return str(path)


# ---------------------------------------------------------------------------------------------------------------
# video_decode <-> face_pipeline
# ---------------------------------------------------------------------------------------------------------------
def clip_to_arrays(clip: Any) -> dict[str, np.ndarray]:
    """The ``video_decode`` outputs of one decoded clip, without the batch dimension.

    Args:
        clip: a :class:`mintime.video.DecodedClip` (frames (T, H, W, 3) uint8 RGB, upright).

    Returns:
        ``video_decode_frames`` (T, H, W, 3) uint8 (numpy, or a torch tensor on the GPU for the DLPack hand-over),
        ``video_decode_frame_indices`` (T,) int64,
        ``video_decode_info`` (3,) float32 = fps, total frame count, display rotation already applied (degrees).
    """
    frames = (
        contiguous(clip.frames)
        if is_torch(clip.frames)
        else np.ascontiguousarray(clip.frames, dtype=np.uint8)
    )
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"decoder returned frames of shape {tuple(frames.shape)}, expected (T>0, H, W, 3)")
    info = np.array([clip.fps, clip.total_frames, getattr(clip, "rotation", 0)], dtype=np.float32)
    return {
        contract.FRAMES: frames,
        contract.FRAME_INDICES: np.asarray(clip.indices, dtype=np.int64),
        contract.DECODE_INFO: info,
    }


def clip_from_arrays(frames: np.ndarray, indices: np.ndarray, info: np.ndarray) -> Any:
    """Rebuild a :class:`mintime.video.DecodedClip` from the ``video_decode`` outputs (no batch dim).

    The frames are taken as upright (both decoders apply the display rotation; ``info[2]`` records it).

    Args:
        frames: (T, H, W, 3) uint8 RGB, numpy or a torch tensor (kept on its device).
        indices: (T,) int64 frame index of each sampled frame.
        info: (3,) float32 fps, total frame count, display rotation (degrees).

    Raises:
        ValueError: inconsistent shapes.
    """
    from mintime.video import DecodedClip

    if is_torch(frames):  # a GPU tensor handed over by DLPack stays where it is
        if frames.dtype != torch_uint8():
            raise ValueError(f"video_decode_frames must be uint8, got {frames.dtype}")
        frames = frames.contiguous()
    else:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
    indices = np.asarray(host(indices), dtype=np.int64).reshape(-1)
    info = np.asarray(host(info), dtype=np.float32).reshape(-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"video_decode_frames has shape {frames.shape}, expected (T>0, H, W, 3)")
    if frames.shape[0] != indices.shape[0]:
        raise ValueError(f"{frames.shape[0]} frames but {indices.shape[0]} frame indices")
    if info.shape[0] != 3:
        raise ValueError(f"video_decode_info has {info.shape[0]} values, expected 3")
    height, width = frames.shape[1:3]
    return DecodedClip(
        frames=frames,
        indices=indices,
        fps=float(info[0]),
        width=int(width),
        height=int(height),
        total_frames=int(round(float(info[1]))),
        rotation=int(round(float(info[2]))) % 360,
        source_size=(0, 0),  # unknown here: video_decode_info does not carry it (the result says null)
    )


# ---------------------------------------------------------------------------------------------------------------
# JSON tensors and explain
# ---------------------------------------------------------------------------------------------------------------
def json_to_tensor(obj: Any) -> np.ndarray:
    """A JSON-able object as a Triton STRING tensor of shape (1, 1) (batch 1, dims [1])."""
    return np.array([[json.dumps(obj, separators=(",", ":")).encode("utf-8")]], dtype=object)


def tensor_to_json(arr: np.ndarray) -> Any:
    """Inverse of :func:`json_to_tensor`: the first element of a STRING tensor parsed as JSON."""
    value = np.asarray(arr, dtype=object).reshape(-1)[0]
    try:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        return json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a UTF-8 JSON string: {exc}") from exc


def explain_outputs(
    face_json: dict[str, Any],
    logit: np.ndarray,
    cls_attention: np.ndarray,
    slot_identity: np.ndarray,
    model: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The ``explain`` step: network outputs of one video → the ensemble outputs (with batch dim 1).

    Args:
        face_json: the ``face_slots_json`` object (:meth:`mintime.faces.stage.FaceStageResult.to_json`).
        logit: (1,) or (1, 1) float32 temporal logit.
        cls_attention: (2, heads, 785) or (1, 2, heads, 785) float32.
        slot_identity: (F,) or (1, F) int64 ``face_slots_identity`` (all -1 when no face).
        model: the ``model`` block of the result.

    Returns:
        ``FAKE_PROBABILITY`` (1, 1) float32 (NaN when no face), ``IDENTITY_SCORES`` (1, K) float32 (kept
        identities in identity order; K = 0 when no face), ``RESULT_JSON`` (1, 1) object (UTF-8 JSON bytes).
    """
    from mintime.explain import explain_video, model_threshold, render_result

    attention = np.asarray(cls_attention, dtype=np.float32)
    explanation = explain_video(
        float(np.asarray(logit).reshape(-1)[0]),
        attention[0] if attention.ndim == 4 else attention,
        np.asarray(slot_identity).reshape(-1),
        threshold=model_threshold(model),
    )
    result = render_result(face_json, explanation, model)
    prob = result.get("fake_probability")
    scores = [
        float(ident["fake_score"])
        for ident in result.get("identities", [])
        if ident.get("fake_score") is not None
    ]
    return {
        contract.FAKE_PROBABILITY: np.array([[math.nan if prob is None else prob]], dtype=np.float32),
        contract.IDENTITY_SCORES: np.array([scores], dtype=np.float32).reshape(1, len(scores)),
        contract.RESULT_JSON: json_to_tensor(result),
    }


# ---------------------------------------------------------------------------------------------------------------
# dynamic batching: requests -> one batch -> per-request outputs
# ---------------------------------------------------------------------------------------------------------------
def stack_inputs(per_request: list[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Concatenate the inputs of several requests along the batch axis.

    Args:
        per_request: one ``{name: (b_i, ...)}`` dict per request (every request has the same names).

    Returns:
        The batched inputs and each request's batch size ``b_i`` (to split the outputs back).
    """
    sizes = [int(next(iter(d.values())).shape[0]) for d in per_request]
    names = list(per_request[0])
    batched = {n: concatenate([d[n] for d in per_request]) for n in names}
    return batched, sizes


def split_outputs(outputs: dict[str, np.ndarray], sizes: list[int]) -> list[dict[str, np.ndarray]]:
    """Inverse of :func:`stack_inputs` for the outputs: one dict per request."""
    bounds = np.cumsum([0, *sizes])
    return [
        {n: contiguous(a[bounds[i] : bounds[i + 1]]) for n, a in outputs.items()} for i in range(len(sizes))
    ]
