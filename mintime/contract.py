"""The I/O contract: tensor names, dtypes and shapes shared by export, the model repository, the client and tests.

Imports nothing heavy (no torch, no tritonclient) so that the client and the Triton Python models can use it.

Conventions
-----------
* Faces go to the backbone as ``(B, F, 3, 224, 224)`` float32, **BGR, 0..255, no normalisation** (the input
  convention of the authors' checkpoints; backbones that want something else normalise inside the module).
* ``F`` = :data:`NUM_SLOTS` face slots per video, ``P`` = :data:`NUM_PATCHES` tokens per face (7x7 map),
  ``T`` = :data:`NUM_TOKENS` = 1 + F*P tokens (CLS first).
* Every model of the ensemble has ``max_batch_size > 0``; one request carries one video (batch 1) and the
  backbone and temporal models batch videos dynamically.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NUM_SLOTS",
    "NUM_PATCHES",
    "NUM_TOKENS",
    "IMAGE_SIZE",
    "FEATURE_SIZE",
    "TensorSpec",
    "ModelSpec",
    "ENSEMBLE",
    "VIDEO_DECODE",
    "FACE_PIPELINE",
    "BACKBONE",
    "TEMPORAL",
    "EXPLAIN",
    "MODELS",
    "STATUS_OK",
    "STATUS_NO_FACE",
]

NUM_SLOTS = 16
FEATURE_SIZE = 7
NUM_PATCHES = FEATURE_SIZE * FEATURE_SIZE
NUM_TOKENS = 1 + NUM_SLOTS * NUM_PATCHES
IMAGE_SIZE = 224
#: Channels of the backbone feature map of the default (shipped) model: EfficientNet-Lite0 / -B0 = 1280,
#: Xception (MINTIME-XC) = 2048. ``mintime export`` rewrites the configs when it differs.
DEFAULT_CHANNELS = 1280

STATUS_OK = "ok"
STATUS_NO_FACE = "no_face"


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a model's interface: Triton name, Triton dtype, dims *without* the batch dimension."""

    name: str
    dtype: str  # Triton config dtype, e.g. "TYPE_FP32"
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> str:
        """The numpy dtype name of this tensor (``object`` for BYTES)."""
        return _NP[self.dtype]

    @property
    def client_dtype(self) -> str:
        """The tritonclient datatype string ("FP32", "BYTES", ...)."""
        return "BYTES" if self.dtype == "TYPE_STRING" else self.dtype.removeprefix("TYPE_")


_NP = {
    "TYPE_FP32": "float32",
    "TYPE_FP16": "float16",
    "TYPE_INT64": "int64",
    "TYPE_INT32": "int32",
    "TYPE_BOOL": "bool",
    "TYPE_UINT8": "uint8",
    "TYPE_STRING": "object",
}


@dataclass(frozen=True)
class ModelSpec:
    """A model of the repository: its name, inputs and outputs."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)


C = -1  # channel dim left dynamic in the contract; configs fix it to the deployed backbone's channels
F, P, T, S = NUM_SLOTS, NUM_PATCHES, NUM_TOKENS, IMAGE_SIZE

# --- the ensemble: one encoded video in, the verdict out ---------------------------------------------------------
ENSEMBLE = ModelSpec(
    name="mintime",
    inputs=(TensorSpec("VIDEO", "TYPE_UINT8", (-1,)),),
    outputs=(
        TensorSpec("FAKE_PROBABILITY", "TYPE_FP32", (1,)),  # NaN when no face was found
        TensorSpec("IDENTITY_SCORES", "TYPE_FP32", (-1,)),  # one per kept identity, in identity order
        TensorSpec("RESULT_JSON", "TYPE_STRING", (1,)),  # the same JSON object as `mintime predict --json`
    ),
)

# --- steps -------------------------------------------------------------------------------------------------------
VIDEO_DECODE = ModelSpec(
    name="video_decode",
    inputs=(TensorSpec("VIDEO", "TYPE_UINT8", (-1,)),),
    outputs=(
        TensorSpec("video_decode_frames", "TYPE_UINT8", (-1, -1, -1, 3)),  # (T, H, W, 3) RGB
        TensorSpec("video_decode_frame_indices", "TYPE_INT64", (-1,)),  # (T,)
        TensorSpec("video_decode_info", "TYPE_FP32", (3,)),  # fps, total frame count, rotation (deg)
    ),
)

FACE_PIPELINE = ModelSpec(
    name="face_pipeline",
    inputs=VIDEO_DECODE.outputs,
    outputs=(
        TensorSpec("face_slots_faces", "TYPE_FP32", (F, 3, S, S)),  # BGR 0..255
        TensorSpec("face_slots_mask", "TYPE_BOOL", (F,)),
        TensorSpec("face_slots_identities_mask", "TYPE_BOOL", (F, F)),
        TensorSpec("face_slots_size_ids", "TYPE_INT64", (F,)),
        TensorSpec("face_slots_positions", "TYPE_INT64", (T,)),
        TensorSpec("face_slots_json", "TYPE_STRING", (1,)),  # identities, boxes, slot map, status
    ),
)

BACKBONE = ModelSpec(
    name="backbone",
    inputs=(TensorSpec("face_slots_faces", "TYPE_FP32", (F, 3, S, S)),),
    outputs=(TensorSpec("backbone_features", "TYPE_FP32", (F, C, FEATURE_SIZE, FEATURE_SIZE)),),
)

TEMPORAL = ModelSpec(
    name="temporal",
    inputs=(
        TensorSpec("backbone_features", "TYPE_FP32", (F, C, FEATURE_SIZE, FEATURE_SIZE)),
        TensorSpec("face_slots_mask", "TYPE_BOOL", (F,)),
        TensorSpec("face_slots_identities_mask", "TYPE_BOOL", (F, F)),
        TensorSpec("face_slots_size_ids", "TYPE_INT64", (F,)),
        TensorSpec("face_slots_positions", "TYPE_INT64", (T,)),
    ),
    outputs=(
        TensorSpec("temporal_logit", "TYPE_FP32", (1,)),
        TensorSpec("temporal_cls_attention", "TYPE_FP32", (2, -1, T)),  # (space|time, heads, tokens)
    ),
)

EXPLAIN = ModelSpec(
    name="explain",
    inputs=(
        TensorSpec("temporal_logit", "TYPE_FP32", (1,)),
        TensorSpec("temporal_cls_attention", "TYPE_FP32", (2, -1, T)),
        TensorSpec("face_slots_json", "TYPE_STRING", (1,)),
    ),
    outputs=ENSEMBLE.outputs,
)

MODELS: tuple[ModelSpec, ...] = (VIDEO_DECODE, FACE_PIPELINE, BACKBONE, TEMPORAL, EXPLAIN)
