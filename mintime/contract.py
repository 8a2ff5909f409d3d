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
    "NETWORKS",
    "STATUS_OK",
    "STATUS_NO_FACE",
    "VIDEO",
    "FRAMES",
    "FRAME_INDICES",
    "DECODE_INFO",
    "FACES",
    "MASK",
    "IDENTITIES_MASK",
    "SIZE_IDS",
    "POSITIONS",
    "SLOT_IDENTITY",
    "FACE_JSON",
    "SLOT_TENSORS",
    "BACKBONE_FEATURES",
    "TEMPORAL_LOGIT",
    "TEMPORAL_CLS_ATTENTION",
    "FAKE_PROBABILITY",
    "IDENTITY_SCORES",
    "RESULT_JSON",
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


# --- tensor names (tutorial style: step-prefixed intermediate names) --------------------------------------------
VIDEO = "VIDEO"  # (nbytes,) uint8, the encoded file
FRAMES = "video_decode_frames"  # (T, H, W, 3) uint8 RGB, display orientation
FRAME_INDICES = "video_decode_frame_indices"  # (T,) int64, index of each sampled frame in the file
DECODE_INFO = "video_decode_info"  # (3,) float32: fps, total frame count, rotation (degrees)
FACES = "face_slots_faces"  # (F, 3, 224, 224) float32 BGR 0..255, zeros on empty slots
MASK = "face_slots_mask"  # (F,) bool, slots the model may attend
IDENTITIES_MASK = "face_slots_identities_mask"  # (F, F) bool, same identity
SIZE_IDS = "face_slots_size_ids"  # (F,) int64, face/frame area bucket
POSITIONS = "face_slots_positions"  # (1 + F*P,) int64, token position ids
SLOT_IDENTITY = "face_slots_identity"  # (F,) int64, kept-identity rank of each slot's face, -1 on dummy slots
FACE_JSON = "face_slots_json"  # (1,) JSON: clip, detections, identities, slot map, status
BACKBONE_FEATURES = "backbone_features"  # (F, C, 7, 7) float32
TEMPORAL_LOGIT = "temporal_logit"  # (1,) float32
TEMPORAL_CLS_ATTENTION = "temporal_cls_attention"  # (2, heads, 1 + F*P) float32, [space, time]
FAKE_PROBABILITY = "FAKE_PROBABILITY"  # (1,) float32, NaN when no face was found
IDENTITY_SCORES = "IDENTITY_SCORES"  # (K,) float32, one per kept identity
RESULT_JSON = "RESULT_JSON"  # (1,) the same JSON object as `mintime predict --json`

C = -1  # channel dim left dynamic in the contract; configs fix it to the deployed backbone's channels
F, P, T, S = NUM_SLOTS, NUM_PATCHES, NUM_TOKENS, IMAGE_SIZE

# --- the ensemble: one encoded video in, the verdict out ---------------------------------------------------------
ENSEMBLE = ModelSpec(
    name="mintime",
    inputs=(TensorSpec(VIDEO, "TYPE_UINT8", (-1,)),),
    outputs=(
        TensorSpec(FAKE_PROBABILITY, "TYPE_FP32", (1,)),
        TensorSpec(IDENTITY_SCORES, "TYPE_FP32", (-1,)),
        TensorSpec(RESULT_JSON, "TYPE_STRING", (1,)),
    ),
)

# --- steps -------------------------------------------------------------------------------------------------------
VIDEO_DECODE = ModelSpec(
    name="video_decode",
    inputs=(TensorSpec(VIDEO, "TYPE_UINT8", (-1,)),),
    outputs=(
        TensorSpec(FRAMES, "TYPE_UINT8", (-1, -1, -1, 3)),
        TensorSpec(FRAME_INDICES, "TYPE_INT64", (-1,)),
        TensorSpec(DECODE_INFO, "TYPE_FP32", (3,)),
    ),
)

FACE_PIPELINE = ModelSpec(
    name="face_pipeline",
    inputs=VIDEO_DECODE.outputs,
    outputs=(
        TensorSpec(FACES, "TYPE_FP32", (F, 3, S, S)),
        TensorSpec(MASK, "TYPE_BOOL", (F,)),
        TensorSpec(IDENTITIES_MASK, "TYPE_BOOL", (F, F)),
        TensorSpec(SIZE_IDS, "TYPE_INT64", (F,)),
        TensorSpec(POSITIONS, "TYPE_INT64", (T,)),
        TensorSpec(SLOT_IDENTITY, "TYPE_INT64", (F,)),
        TensorSpec(FACE_JSON, "TYPE_STRING", (1,)),
    ),
)
#: The face stage's array outputs (everything but the JSON), in contract order.
SLOT_TENSORS: tuple[TensorSpec, ...] = tuple(t for t in FACE_PIPELINE.outputs if t.name != FACE_JSON)

BACKBONE = ModelSpec(
    name="backbone",
    inputs=(FACE_PIPELINE.output(FACES),),
    outputs=(TensorSpec(BACKBONE_FEATURES, "TYPE_FP32", (F, C, FEATURE_SIZE, FEATURE_SIZE)),),
)

TEMPORAL = ModelSpec(
    name="temporal",
    inputs=(
        BACKBONE.outputs[0],
        *(FACE_PIPELINE.output(n) for n in (MASK, IDENTITIES_MASK, SIZE_IDS, POSITIONS)),
    ),
    outputs=(
        TensorSpec(TEMPORAL_LOGIT, "TYPE_FP32", (1,)),
        TensorSpec(TEMPORAL_CLS_ATTENTION, "TYPE_FP32", (2, -1, T)),
    ),
)

EXPLAIN = ModelSpec(
    name="explain",
    inputs=(
        *TEMPORAL.outputs,
        FACE_PIPELINE.output(SLOT_IDENTITY),
        FACE_PIPELINE.output(FACE_JSON),
    ),
    outputs=ENSEMBLE.outputs,
)

MODELS: tuple[ModelSpec, ...] = (VIDEO_DECODE, FACE_PIPELINE, BACKBONE, TEMPORAL, EXPLAIN)
#: The two networks by role (what ``mintime export`` and the network runners key on).
NETWORKS: dict[str, ModelSpec] = {"backbone": BACKBONE, "temporal": TEMPORAL}
