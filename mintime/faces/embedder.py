"""Face embedders for identity clustering: dlib's ResNet (default) and FaceNet InceptionResnetV1 (by path).

An embedder maps faces, given as boxes inside their frames, to identity vectors. The frames are passed whole so
that an embedder can align each face with its own landmark model (dlib) or crop it itself (FaceNet).

* :class:`DlibEmbedder` (default, weights installable offline): dlib's 5-point shape predictor aligns each face
  (``get_face_chip`` geometry, 150x150, padding 0.25) and ``face_recognition_model_v1`` (a ResNet-34-like
  network, the ``face_recognition`` library's model) returns a 128-d descriptor. Euclidean distance, dlib's
  same-person threshold 0.6. The ``.dat`` files come from the ``face-recognition-models`` package, located on
  disk without importing it (its ``__init__`` imports ``pkg_resources``).
* :class:`ResnetEmbedder` (``"resnet"``): the same dlib ResNet as a batched PyTorch module
  (:mod:`mintime.faces.dlib_resnet`, weights read from the same ``.dat``), with chips cut on the frames' device
  from five landmarks (:mod:`mintime.faces.align`: MTCNN's points and a template from dlib's mean face shape)
  instead of dlib's 5-point shape predictor. Same descriptor space, metric and threshold as ``"dlib"``; given
  dlib's own chips the descriptors agree to 1e-6. Without landmarks it finds them with one batched MTCNN O-Net
  pass over the boxes.
* :class:`FacenetEmbedder`: InceptionResnetV1 (Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of
  Residual Connections on Learning", 2016; FaceNet training, Schroff et al., 2015) for users who have
  facenet-pytorch's VGGFace2 weights file (``20180402-114759-vggface2.pt``, the embedder of the original
  MINTIME clustering). The network here is written for this project with parameter names matching
  facenet-pytorch's ``InceptionResnetV1`` so the file loads strictly. Differences from the original MINTIME
  clustering (``mintime-original.md`` §5.3, §7.1): RGB input always (the original's ``predict.py`` fed BGR),
  160x160 tight box crops (FaceNet's usual input; the original resized its 1/3-margin square crops to 128x128),
  and a cosine *distance* threshold ``1 - similarity`` (0.55 = the original CLI's similarity 0.45).

Distances are always "smaller is more similar": ``threshold`` is the largest distance at which two faces are
taken for the same person, in the embedder's ``metric``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mintime.faces.dlib_resnet import dlib_model_paths
from mintime.faces.identities import pairwise_distances

__all__ = [
    "FaceEmbedder",
    "DlibEmbedder",
    "ResnetEmbedder",
    "FacenetEmbedder",
    "InceptionResnetV1",
    "create_embedder",
    "dlib_model_paths",
    "load_facenet_state_dict",
    "pairwise_distances",
]

logger = logging.getLogger(__name__)

Box = Sequence[float] | np.ndarray


@runtime_checkable
class FaceEmbedder(Protocol):
    """What identity clustering needs from a face embedder.

    Attributes:
        name: registry name ("dlib", "facenet").
        dim: embedding size d.
        metric: "euclidean" or "cosine" (cosine distance = 1 - cosine similarity).
        threshold: largest distance in ``metric`` at which two faces are the same person.
    """

    name: str
    dim: int
    metric: str
    threshold: float

    def embed(
        self, frames: Sequence[np.ndarray], boxes: Sequence[Box], frame_ids: Sequence[int]
    ) -> np.ndarray:
        """Embeds faces.

        Args:
            frames: per face, the (H, W, 3) uint8 RGB frame that holds it (faces of one frame repeat the same
                array; nothing is copied).
            boxes: per face, (4,) x1, y1, x2, y2 in pixels of its frame.
            frame_ids: per face, an id of its frame (equal for faces of one frame), e.g. the frame index in
                the file.

        Returns:
            (n, dim) float32 embeddings, in the order of ``boxes``.
        """
        ...


def _check_inputs(frames: Sequence[np.ndarray], boxes: Sequence[Box], frame_ids: Sequence[int]) -> np.ndarray:
    """Validates embedder inputs (one frame, box and frame id per face); returns boxes (n, 4) float64."""
    box_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(frames) == len(box_arr) == len(frame_ids):
        raise ValueError(
            f"need one frame, box and frame id per face; got {len(frames)} frames, {len(box_arr)} boxes, "
            f"{len(frame_ids)} frame ids"
        )
    seen: set[int] = set()
    for k, f in enumerate(frames):
        if id(f) in seen:
            continue
        seen.add(id(f))
        if not (isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3):
            raise ValueError(
                f"the frame of face {k} must be an (H, W, 3) uint8 RGB array, got {getattr(f, 'shape', None)} "
                f"{getattr(f, 'dtype', type(f).__name__)}"
            )
    return box_arr


# ---------------------------------------------------------------------------------------------------------------
# dlib
# ---------------------------------------------------------------------------------------------------------------
class DlibEmbedder:
    """dlib ResNet face descriptor (128-d, euclidean, same person below 0.6).

    Each box becomes a ``dlib.rectangle``; the 5-point shape predictor finds the landmarks inside it and the
    recognition model aligns the chip (``get_face_chip`` geometry) and computes the descriptor, all faces of all
    frames in one batched ``compute_face_descriptor`` call. About 75 ms per face on one CPU core.

    Args:
        num_jitters: dlib's test-time augmentation (>1 averages that many jittered chips; slower).
        predictor_path: 5-point shape predictor ``.dat``; default from ``face-recognition-models``.
        model_path: ``dlib_face_recognition_resnet_model_v1.dat``; default from ``face-recognition-models``.
        padding: chip padding around the aligned face (dlib's default 0.25, the one the model was trained with).
        threshold: same-person euclidean distance (dlib's 0.6).
    """

    name = "dlib"
    dim = 128
    metric = "euclidean"

    def __init__(
        self,
        *,
        num_jitters: int = 0,
        predictor_path: str | Path | None = None,
        model_path: str | Path | None = None,
        padding: float = 0.25,
        threshold: float = 0.6,
    ) -> None:
        import dlib

        if predictor_path is None or model_path is None:
            default_predictor, default_model = dlib_model_paths()
            predictor_path = predictor_path or default_predictor
            model_path = model_path or default_model
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(predictor_path))
        self._model = dlib.face_recognition_model_v1(str(model_path))
        logger.info("dlib face embedder: %s + %s", predictor_path, model_path)
        self.num_jitters = int(num_jitters)
        self.padding = float(padding)
        self.threshold = float(threshold)

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """The 5 landmarks dlib aligns with.

        Args:
            frame: (H, W, 3) uint8 RGB.
            box: (4,) x1, y1, x2, y2.

        Returns:
            (5, 2) float32 x, y (eye corners and the base of the nose).
        """
        shape = self._predictor(np.ascontiguousarray(frame), self._rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _rect(self, box: Box) -> object:
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        return self._dlib.rectangle(x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))

    def embed(
        self, frames: Sequence[np.ndarray], boxes: Sequence[Box], frame_ids: Sequence[int]
    ) -> np.ndarray:
        """Embeds faces (see :meth:`FaceEmbedder.embed`).

        Args:
            frames: per face, the (H, W, 3) uint8 RGB frame that holds it.
            boxes: per face, (4,) x1, y1, x2, y2.
            frame_ids: per face, an id of its frame (unused: each face is aligned in its own frame).

        Returns:
            (n, 128) float32 descriptors in the order of ``boxes``.
        """
        box_arr = _check_inputs(frames, boxes, frame_ids)
        out = np.zeros((len(box_arr), self.dim), dtype=np.float32)
        if not len(box_arr):
            return out
        # one (image, detections) pair per distinct frame array, all faces in one batched descriptor call
        slot: dict[int, int] = {}
        images, detections, order = [], [], []
        for k, frame in enumerate(frames):
            if id(frame) not in slot:
                slot[id(frame)] = len(images)
                images.append(np.ascontiguousarray(frame))
                detections.append(self._dlib.full_object_detections())
                order.append([])
            j = slot[id(frame)]
            detections[j].append(self._predictor(images[j], self._rect(box_arr[k])))
            order[j].append(k)
        descriptors = self._model.compute_face_descriptor(images, detections, self.num_jitters, self.padding)
        for faces, per_image in zip(order, descriptors, strict=True):
            for k, d in zip(faces, per_image, strict=True):
                out[k] = np.asarray(d, dtype=np.float32)
        return out


# ---------------------------------------------------------------------------------------------------------------
# dlib's ResNet in PyTorch, chips cut on the device from five landmarks
# ---------------------------------------------------------------------------------------------------------------
class ResnetEmbedder:
    """dlib's face descriptor (128-d, euclidean, same person below 0.6) as a batched torch network.

    The faces are aligned by :func:`mintime.faces.align.align_faces` (dlib's chip geometry: 150x150, padding
    0.25, dlib's pyramid for large faces) from five landmarks per face, and embedded by
    :class:`mintime.faces.dlib_resnet.DlibResNet` in batches, all on ``device``.

    Use :meth:`descriptors` on a frames tensor with landmarks (the device path), or :meth:`embed` (the
    :class:`FaceEmbedder` protocol: numpy frames and boxes; landmarks optional).

    Args:
        model_path: ``dlib_face_recognition_resnet_model_v1.dat``; default from ``face-recognition-models``.
        device: torch device of the network (and of the alignment when frames come as numpy).
        batch_size: chips per network pass.
        threshold: same-person euclidean distance (dlib's 0.6).
        template: (5, 2) landmark template in the unit face square (default: MTCNN's five points).
        mtcnn_weights_dir: folder of MTCNN's ``onet.pt`` for landmarks when none are given (default: the
            facenet-pytorch wheel's).
    """

    name = "resnet"
    dim = 128
    metric = "euclidean"

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        threshold: float = 0.6,
        template: np.ndarray | None = None,
        mtcnn_weights_dir: str | Path | None = None,
    ) -> None:
        from mintime.faces.align import MTCNN_TEMPLATE
        from mintime.faces.dlib_resnet import load_dlib_resnet

        self.device = torch.device(device)
        self.model = load_dlib_resnet(model_path, self.device)
        self.batch_size = int(batch_size)
        self.threshold = float(threshold)
        self.template = np.asarray(MTCNN_TEMPLATE if template is None else template, dtype=np.float64)
        self._mtcnn_weights_dir = mtcnn_weights_dir
        self._onet: nn.Module | None = None

    @torch.inference_mode()
    def descriptors_from_chips(self, chips: torch.Tensor) -> torch.Tensor:
        """(N, 150, 150, 3) RGB uint8/float chips → (N, 128) float32 descriptors on ``device``."""
        out = torch.zeros(chips.shape[0], self.dim, dtype=torch.float32, device=self.device)
        for s in range(0, chips.shape[0], self.batch_size):
            out[s : s + self.batch_size] = self.model(chips[s : s + self.batch_size].to(self.device))
        return out

    @torch.inference_mode()
    def descriptors(
        self,
        frames: torch.Tensor | np.ndarray,
        frame_pos: torch.Tensor | np.ndarray | Sequence[int],
        landmarks: torch.Tensor | np.ndarray,
    ) -> torch.Tensor:
        """Aligns and embeds faces given their landmarks (the device path).

        Args:
            frames: (T, H, W, 3) uint8 RGB frames (a torch tensor stays on its device; numpy goes to
                ``device``).
            frame_pos: (N,) frame of each face in ``frames``.
            landmarks: (N, 5, 2) landmarks in frame pixels, in the template's order (MTCNN's: left eye, right
                eye, nose, left and right mouth corner).

        Returns:
            (N, 128) float32 descriptors on ``device``.
        """
        from mintime.faces.align import align_faces

        if not isinstance(frames, torch.Tensor):
            frames = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        chips = align_faces(frames, frame_pos, landmarks, template=self.template)
        return self.descriptors_from_chips(chips)

    @torch.inference_mode()
    def landmarks(
        self,
        frames: torch.Tensor,
        frame_pos: torch.Tensor | np.ndarray | Sequence[int],
        boxes: torch.Tensor | np.ndarray,
    ) -> torch.Tensor:
        """Five landmarks per box from one batched MTCNN O-Net pass (for callers without detector landmarks).

        Each box is squared around its centre, cut from its frame (clipped to it, at full resolution),
        resampled to 48x48 by area averaging and passed to O-Net, as in MTCNN's last stage.

        Args:
            frames: (T, H, W, 3) uint8 RGB.
            frame_pos: (N,) frame of each box.
            boxes: (N, 4) x1, y1, x2, y2.

        Returns:
            (N, 5, 2) float64 landmarks (CPU).
        """
        if self._onet is None:
            from mintime.faces.mtcnn import ONet, default_weights_dir

            wdir = Path(self._mtcnn_weights_dir) if self._mtcnn_weights_dir else default_weights_dir()
            onet = ONet()
            onet.load_state_dict(torch.load(wdir / "onet.pt", map_location="cpu", weights_only=True))
            self._onet = onet.eval().to(self.device)
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).reshape(-1, 4)
        pos = np.asarray(frame_pos, dtype=np.int64).reshape(-1)
        h, w = frames.shape[1:3]
        side = torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        x1 = (b[:, 0] + b[:, 2]) / 2 - side / 2
        y1 = (b[:, 1] + b[:, 3]) / 2 - side / 2
        sq = torch.stack([x1, y1, x1 + side, y1 + side], dim=1)
        patches = torch.zeros(len(b), 3, 48, 48, dtype=torch.float32, device=self.device)
        for k in range(len(b)):
            xa, ya = max(int(sq[k, 0]), 1) - 1, max(int(sq[k, 1]), 1) - 1
            xb, yb = min(int(sq[k, 2]), w), min(int(sq[k, 3]), h)
            if xb <= xa or yb <= ya:
                raise ValueError(f"box {b[k].tolist()} lies outside its {w}x{h} frame")
            crop = frames[int(pos[k]), ya:yb, xa:xb].permute(2, 0, 1)[None].float().to(self.device)
            patches[k] = F.adaptive_avg_pool2d(crop, 48)[0]
        _, marks, _ = self._onet((patches - 127.5) * 0.0078125)
        marks = marks.double().cpu()
        bw = (sq[:, 2] - sq[:, 0] + 1)[:, None]
        bh = (sq[:, 3] - sq[:, 1] + 1)[:, None]
        px = bw * marks[:, :5] + sq[:, 0:1] - 1
        py = bh * marks[:, 5:] + sq[:, 1:2] - 1
        return torch.stack([px, py], dim=2)

    def embed(
        self,
        frames: Sequence[np.ndarray],
        boxes: Sequence[Box],
        frame_ids: Sequence[int],
        landmarks: np.ndarray | None = None,
    ) -> np.ndarray:
        """Embeds faces (see :meth:`FaceEmbedder.embed`).

        Args:
            frames: per face, the (H, W, 3) uint8 RGB frame that holds it.
            boxes: per face, (4,) x1, y1, x2, y2.
            frame_ids: per face, an id of its frame (unused: faces are grouped by frame array).
            landmarks: (n, 5, 2) detector landmarks per face (MTCNN's); None finds them with O-Net.

        Returns:
            (n, 128) float32 descriptors in the order of ``boxes``.
        """
        box_arr = _check_inputs(frames, boxes, frame_ids)
        out = np.zeros((len(box_arr), self.dim), dtype=np.float32)
        if not len(box_arr):
            return out
        if landmarks is not None:
            landmarks = np.asarray(landmarks, dtype=np.float64).reshape(len(box_arr), 5, 2)
        # stack the distinct frames per frame size; one alignment + network pass per size
        slot: dict[int, int] = {}
        distinct: list[np.ndarray] = []
        for f in frames:
            if id(f) not in slot:
                slot[id(f)] = len(distinct)
                distinct.append(f)
        face_slot = np.array([slot[id(f)] for f in frames])
        shapes = sorted({distinct[j].shape for j in range(len(distinct))})
        for shape in shapes:
            members = [j for j in range(len(distinct)) if distinct[j].shape == shape]
            remap = {j: i for i, j in enumerate(members)}
            faces = np.flatnonzero(np.isin(face_slot, members))
            stack = torch.from_numpy(np.stack([distinct[j] for j in members])).to(self.device)
            pos = np.array([remap[int(face_slot[k])] for k in faces], dtype=np.int64)
            pts = landmarks[faces] if landmarks is not None else self.landmarks(stack, pos, box_arr[faces])
            out[faces] = self.descriptors(stack, pos, pts).cpu().numpy()
        return out


# ---------------------------------------------------------------------------------------------------------------
# FaceNet InceptionResnetV1 (parameter names as facenet-pytorch's, so its state dicts load strictly)
# ---------------------------------------------------------------------------------------------------------------
ConvSpec = tuple[
    int, int | tuple[int, int], int, int | tuple[int, int]
]  # out channels, kernel, stride, padding


class _ConvBnReLU(nn.Module):
    """Conv (no bias) → BatchNorm (eps 1e-3, TensorFlow's) → ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int],
        stride: int,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _branch(in_ch: int, specs: Sequence[ConvSpec]) -> nn.Module:
    """A chain of conv units: a single unit as is, longer chains as ``nn.Sequential`` (keys ``0.``, ``1.``)."""
    units: list[nn.Module] = []
    for out_ch, kernel, stride, padding in specs:
        units.append(_ConvBnReLU(in_ch, out_ch, kernel, stride, padding))
        in_ch = out_ch
    return units[0] if len(units) == 1 else nn.Sequential(*units)


class _InceptionResidual(nn.Module):
    """Inception-ResNet block: parallel branches, concat, 1x1 conv back to ``channels``, scaled residual add.

    Args:
        channels: input = output channels.
        branches: conv chains, registered as ``branch0``, ``branch1``, ...
        scale: residual scale.
        activate: apply ReLU after the addition (False only for the last block).
    """

    def __init__(
        self, channels: int, branches: Sequence[Sequence[ConvSpec]], *, scale: float, activate: bool = True
    ) -> None:
        super().__init__()
        self.num_branches = len(branches)
        for i, specs in enumerate(branches):
            self.add_module(f"branch{i}", _branch(channels, specs))
        concat = sum(specs[-1][0] for specs in branches)
        self.conv2d = nn.Conv2d(concat, channels, 1)
        self.scale = scale
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], dim=1)
        y = x + self.scale * self.conv2d(y)
        return F.relu(y) if self.activate else y


class _Reduction(nn.Module):
    """Grid reduction: conv branches plus a final 3x3/2 max-pool branch, concatenated on channels."""

    def __init__(self, channels: int, branches: Sequence[Sequence[ConvSpec]]) -> None:
        super().__init__()
        self.num_branches = len(branches) + 1
        for i, specs in enumerate(branches):
            self.add_module(f"branch{i}", _branch(channels, specs))
        self.add_module(f"branch{len(branches)}", nn.MaxPool2d(3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], dim=1)


def _block35() -> _InceptionResidual:  # 35x35 grid at 299 px input, 256 channels
    return _InceptionResidual(
        256,
        [[(32, 1, 1, 0)], [(32, 1, 1, 0), (32, 3, 1, 1)], [(32, 1, 1, 0), (32, 3, 1, 1), (32, 3, 1, 1)]],
        scale=0.17,
    )


def _block17() -> _InceptionResidual:  # 17x17 grid, 896 channels
    return _InceptionResidual(
        896,
        [[(128, 1, 1, 0)], [(128, 1, 1, 0), (128, (1, 7), 1, (0, 3)), (128, (7, 1), 1, (3, 0))]],
        scale=0.10,
    )


def _block8(scale: float = 0.20, activate: bool = True) -> _InceptionResidual:  # 8x8 grid, 1792 channels
    return _InceptionResidual(
        1792,
        [[(192, 1, 1, 0)], [(192, 1, 1, 0), (192, (1, 3), 1, (0, 1)), (192, (3, 1), 1, (1, 0))]],
        scale=scale,
        activate=activate,
    )


class InceptionResnetV1(nn.Module):
    """InceptionResnetV1 face embedder (FaceNet), state-dict compatible with facenet-pytorch.

    Input (N, 3, H, W) float32 RGB standardised as (x - 127.5) / 128, usually 160x160; output (N, 512) float32
    L2-normalised embeddings. No classification head: the ``logits.*`` entries of facenet-pytorch's files (the
    VGGFace2 training classes) are ignored by :func:`load_facenet_state_dict`.

    Args:
        dropout: dropout before the bottleneck (inactive in eval mode).
    """

    def __init__(self, *, dropout: float = 0.6) -> None:
        super().__init__()
        # --- stem: 160 → 3x3 grid of 1792 channels after the three stages ------------------------------------
        self.conv2d_1a = _ConvBnReLU(3, 32, 3, 2)
        self.conv2d_2a = _ConvBnReLU(32, 32, 3, 1)
        self.conv2d_2b = _ConvBnReLU(32, 64, 3, 1, 1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = _ConvBnReLU(64, 80, 1, 1)
        self.conv2d_4a = _ConvBnReLU(80, 192, 3, 1)
        self.conv2d_4b = _ConvBnReLU(192, 256, 3, 2)
        # --- Inception-ResNet stages ----------------------------------------------------------------------------
        self.repeat_1 = nn.Sequential(*(_block35() for _ in range(5)))
        self.mixed_6a = _Reduction(256, [[(384, 3, 2, 0)], [(192, 1, 1, 0), (192, 3, 1, 1), (256, 3, 2, 0)]])
        self.repeat_2 = nn.Sequential(*(_block17() for _ in range(10)))
        self.mixed_7a = _Reduction(
            896,
            [
                [(256, 1, 1, 0), (384, 3, 2, 0)],
                [(256, 1, 1, 0), (256, 3, 2, 0)],
                [(256, 1, 1, 0), (256, 3, 1, 1), (256, 3, 2, 0)],
            ],
        )
        self.repeat_3 = nn.Sequential(*(_block8() for _ in range(5)))
        self.block8 = _block8(scale=1.0, activate=False)
        # --- embedding head --------------------------------------------------------------------------------------
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1792, 512, bias=False)
        self.last_bn = nn.BatchNorm1d(512, eps=1e-3, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) standardised RGB → (N, 512) unit vectors."""
        for stage in (self.conv2d_1a, self.conv2d_2a, self.conv2d_2b, self.maxpool_3a, self.conv2d_3b):
            x = stage(x)
        for stage in (self.conv2d_4a, self.conv2d_4b, self.repeat_1, self.mixed_6a, self.repeat_2):
            x = stage(x)
        x = self.block8(self.repeat_3(self.mixed_7a(x)))
        x = self.dropout(self.avgpool_1a(x).flatten(1))  # (N, 1792)
        x = self.last_bn(self.last_linear(x))
        return F.normalize(x, p=2, dim=1)


def load_facenet_state_dict(
    model: InceptionResnetV1, state_dict: Mapping[str, torch.Tensor], *, what: str
) -> None:
    """Loads facenet-pytorch weights strictly (the ``logits.*`` classification head is dropped first).

    Args:
        model: the network to fill.
        state_dict: name → tensor, as saved by facenet-pytorch.
        what: description of the source for error messages (e.g. the file path).

    Raises:
        mintime.checkpoints.CheckpointError: missing, unexpected or mis-shaped keys (the model is untouched).
    """
    from mintime.checkpoints import load_state_dict_strict

    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("logits.")}
    load_state_dict_strict(model, state_dict, what=f"{what} (FaceNet InceptionResnetV1)")


class FacenetEmbedder:
    """FaceNet InceptionResnetV1 embeddings (512-d, L2-normalised, cosine distance).

    Each face is cropped tightly from its box (``margin`` is a fraction of the box size added on every side,
    clipped to the frame), resized to ``image_size`` squared with area interpolation, standardised as
    (x - 127.5) / 128 in RGB order, and embedded.

    Args:
        weights_path: facenet-pytorch state dict file (e.g. ``20180402-114759-vggface2.pt``).
        device: torch device for the network.
        image_size: network input side (160, FaceNet's usual; the original MINTIME used 128).
        margin: extra context around the box as a fraction of its width/height per side (0 = the box).
        threshold: same-person cosine distance (0.55 = the original's similarity threshold 0.45).
        batch_size: faces per forward pass.
    """

    name = "facenet"
    dim = 512
    metric = "cosine"

    def __init__(
        self,
        weights_path: str | Path,
        device: str | torch.device = "cpu",
        *,
        image_size: int = 160,
        margin: float = 0.0,
        threshold: float = 0.55,
        batch_size: int = 64,
    ) -> None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"FaceNet weights not found: {path}")
        from mintime.checkpoints import read_state_dict

        # safe (weights_only) load; unwraps {'state_dict': ...} and strips 'module.'
        state = read_state_dict(path)
        self.device = torch.device(device)
        self.model = InceptionResnetV1()
        load_facenet_state_dict(self.model, state, what=str(path))
        self.model.eval().to(self.device)
        logger.info("FaceNet InceptionResnetV1 loaded from %s on %s", path, self.device)
        self.image_size = int(image_size)
        self.margin = float(margin)
        self.threshold = float(threshold)
        self.batch_size = int(batch_size)

    def preprocess(
        self, frames: Sequence[np.ndarray], boxes: Sequence[Box], frame_ids: Sequence[int]
    ) -> np.ndarray:
        """Crops and standardises faces.

        Args:
            frames: per face, the (H, W, 3) uint8 RGB frame that holds it.
            boxes: per face, (4,) x1, y1, x2, y2.
            frame_ids: per face, an id of its frame (unused).

        Returns:
            (n, 3, S, S) float32 RGB, (x - 127.5) / 128, S = ``image_size``.
        """
        import cv2

        box_arr = _check_inputs(frames, boxes, frame_ids)
        s = self.image_size
        out = np.empty((len(box_arr), 3, s, s), dtype=np.float32)
        for k, (box, frame) in enumerate(zip(box_arr, frames, strict=True)):
            h, w = frame.shape[:2]
            x1, y1, x2, y2 = box
            mx, my = self.margin * (x2 - x1), self.margin * (y2 - y1)
            xa, ya = int(np.clip(np.floor(x1 - mx), 0, w - 1)), int(np.clip(np.floor(y1 - my), 0, h - 1))
            xb, yb = int(np.clip(np.ceil(x2 + mx), xa + 1, w)), int(np.clip(np.ceil(y2 + my), ya + 1, h))
            crop = cv2.resize(frame[ya:yb, xa:xb], (s, s), interpolation=cv2.INTER_AREA)
            out[k] = (crop.astype(np.float32).transpose(2, 0, 1) - 127.5) / 128.0
        return out

    @torch.inference_mode()
    def embed(
        self, frames: Sequence[np.ndarray], boxes: Sequence[Box], frame_ids: Sequence[int]
    ) -> np.ndarray:
        """Embeds faces (see :meth:`FaceEmbedder.embed`).

        Returns:
            (n, 512) float32 unit vectors in the order of ``boxes``.
        """
        x = self.preprocess(frames, boxes, frame_ids)
        out = np.zeros((len(x), self.dim), dtype=np.float32)
        for start in range(0, len(x), self.batch_size):
            batch = torch.from_numpy(x[start : start + self.batch_size]).to(self.device)
            out[start : start + len(batch)] = self.model(batch).float().cpu().numpy()
        return out


# ---------------------------------------------------------------------------------------------------------------
def create_embedder(
    name: str = "dlib",
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    **kwargs: object,
) -> FaceEmbedder:
    """Builds a face embedder by name.

    Args:
        name: "dlib" (default, offline weights from face-recognition-models), "resnet" (the same network and
            weights in PyTorch, chips cut from five landmarks on ``device``) or "facenet" (needs ``weights``).
        weights: FaceNet state dict path; for "dlib" and "resnet" an optional face recognition ``.dat`` path.
        device: torch device ("resnet" and FaceNet; dlib runs on the CPU in this build).
        **kwargs: passed to the embedder's constructor.

    Returns:
        The embedder.
    """
    if name == "dlib":
        if weights is not None:
            kwargs.setdefault("model_path", weights)
        return DlibEmbedder(**kwargs)  # type: ignore[arg-type]
    if name == "resnet":
        if weights is not None:
            kwargs.setdefault("model_path", weights)
        return ResnetEmbedder(device=device, **kwargs)  # type: ignore[arg-type]
    if name == "facenet":
        if weights is None:
            raise ValueError(
                "the 'facenet' embedder needs weights=<path to facenet-pytorch's 20180402-114759-vggface2.pt>; "
                "no copy ships with this project (use the default 'dlib' embedder otherwise)"
            )
        return FacenetEmbedder(weights, device, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown face embedder {name!r}; expected 'dlib', 'resnet' or 'facenet'")
