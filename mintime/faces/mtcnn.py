"""MTCNN face detection, batched over all frames of a clip (own implementation, no torchvision).

Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks", IEEE SPL 2016.
The networks are the facenet-pytorch ones (their parameter names match the state dicts shipped in the wheel's
``facenet_pytorch/data/{pnet,rnet,onet}.pt``); the package itself is never imported (it imports torchvision).

The cascade follows facenet-pytorch's ``detect_face`` so that the original MINTIME thresholds (0.85, 0.95, 0.95)
keep their meaning, but every stage runs batched on the detector's device:

1. **Input** ``(T, H, W, 3)`` uint8 RGB is downscaled to ``(int(H*scale), int(W*scale))`` (the original detected
   on PIL images resized to ``(W//2, H//2)`` with PIL's default antialiased bicubic filter; :func:`resize_like_pil`
   reproduces it with two ``interpolate(mode="bicubic", antialias=True)`` passes rounded to 8 bits).
2. **P-Net** runs on every pyramid scale (``12/min_face_size * factor**k``) for all T frames at once; each pyramid
   level is made with area interpolation (``interpolate(mode="area")``, as facenet-pytorch). Candidates are
   suppressed per (scale, frame) at IoU 0.5, then per frame at IoU 0.7, regressed and squared.
3. **R-Net / O-Net** take all candidate patches of all frames in one batch each (chunked by ``max_batch_crops``).
   A patch is the integer box clipped to the image (facenet-pytorch's ``pad``: no zero padding outside the
   frame) resampled to 24x24 / 48x48 by *area interpolation* (adaptive average pooling). Patches of different
   sizes are resampled together from a per-frame integral image: output cell ``i`` averages source rows
   ``floor(i*n/s) .. ceil((i+1)*n/s)`` exactly like ``adaptive_avg_pool2d``, so the values equal facenet-pytorch's
   per-patch ``interpolate(patch, (s, s), mode="area")`` up to float rounding.
4. After R-Net: threshold, per-frame NMS (IoU 0.7), box regression, squaring. After O-Net: threshold, landmarks,
   regression, per-frame NMS with the "Min" overlap (intersection over the smaller area, +1 pixel convention).

Non-maximum suppression (:func:`batched_nms`) is vectorised: boxes are grouped (frame, or scale and frame), padded
to ``(groups, L)``, their pairwise overlaps computed at once, and the greedy result obtained as the fixed point
of ``keep[i] = not any(keep[j] and overlap[j, i] > t for j ranked before i)``. Ranking is by score, descending,
with ties broken by input order (stable sort).

Differences from facenet-pytorch, all deliberate: candidates whose clipped patch is empty are dropped (facenet
skips the patch but keeps the box, which misaligns later boxes and scores); NMS is computed on the true
coordinates of each group (torchvision offsets the boxes by ``group * (max + 1)``, which perturbs the overlaps
by float rounding); the output boxes are mapped back to full resolution with the exact per-axis factor
``W / w_small`` (= 2 for ``scale=0.5`` and even sizes, the original's ``x2``).
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FrameDetections",
    "MTCNN",
    "PNet",
    "RNet",
    "ONet",
    "batched_nms",
    "crop_resize_area",
    "default_weights_dir",
    "resize_like_pil",
]

logger = logging.getLogger(__name__)

#: The original MINTIME thresholds for P-Net, R-Net and O-Net (facenet-pytorch's own default is 0.6/0.7/0.7).
DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.85, 0.95, 0.95)


@dataclass
class FrameDetections:
    """The faces found in one frame, sorted by box area, largest first.

    Attributes:
        boxes: (n, 4) float32 ``x1, y1, x2, y2`` in full-resolution pixels.
        scores: (n,) float32 O-Net face probabilities.
        landmarks: (n, 5, 2) float32 ``(x, y)`` of left eye, right eye, nose, left and right mouth corner.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> FrameDetections:
        """A frame without faces."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


# ---------------------------------------------------------------------------------------------------------------
# networks (parameter names = facenet-pytorch state dicts)
# ---------------------------------------------------------------------------------------------------------------
class PNet(nn.Module):
    """Proposal network: fully convolutional, 12x12 receptive field, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (N, 3, h, w) float32 normalised as ``(v - 127.5) / 128``.

        Returns:
            reg (N, 4, h', w') box offsets and prob (N, h', w') face probability.
        """
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        prob = torch.softmax(self.conv4_1(x), dim=1)[:, 1]
        return self.conv4_2(x), prob


class RNet(nn.Module):
    """Refinement network on 24x24 patches."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (N, 3, 24, 24) float32 normalised.

        Returns:
            reg (N, 4) box offsets and prob (N,) face probability.
        """
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # (N, 3*3*64) in the Caffe (w, h, c) order
        x = self.prelu4(self.dense4(x))
        prob = torch.softmax(self.dense5_1(x), dim=1)[:, 1]
        return self.dense5_2(x), prob


class ONet(nn.Module):
    """Output network on 48x48 patches: box offsets, five landmarks and the final score."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Args: x (N, 3, 48, 48) float32 normalised.

        Returns:
            reg (N, 4) box offsets, landmarks (N, 10) relative ``x1..x5, y1..y5`` and prob (N,).
        """
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # (N, 3*3*128) in the Caffe (w, h, c) order
        x = self.prelu5(self.dense5(x))
        prob = torch.softmax(self.dense6_1(x), dim=1)[:, 1]
        return self.dense6_2(x), self.dense6_3(x), prob


def default_weights_dir() -> Path:
    """The ``data`` folder of the installed facenet-pytorch wheel, found without importing the package.

    Raises:
        FileNotFoundError: facenet-pytorch is not installed (``pip install --no-deps facenet-pytorch``).
    """
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MTCNN weights not found: install the facenet-pytorch wheel (`pip install --no-deps "
            "facenet-pytorch==2.6.0`) or pass weights_dir= a folder with pnet.pt, rnet.pt, onet.pt"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


# ---------------------------------------------------------------------------------------------------------------
# vectorised box operations
# ---------------------------------------------------------------------------------------------------------------
def _pairwise_overlap(boxes: Tensor, mode: str) -> Tensor:
    """Overlap of every pair inside each group. boxes (G, L, 4) -> (G, L, L) float32."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    one = 1.0 if mode == "min" else 0.0  # the "Min" NMS of MTCNN uses the +1 pixel convention
    area = (x2 - x1 + one) * (y2 - y1 + one)
    iw = (
        torch.minimum(x2[:, :, None], x2[:, None, :]) - torch.maximum(x1[:, :, None], x1[:, None, :]) + one
    ).clamp(min=0)
    ih = (
        torch.minimum(y2[:, :, None], y2[:, None, :]) - torch.maximum(y1[:, :, None], y1[:, None, :]) + one
    ).clamp(min=0)
    inter = iw * ih
    if mode == "min":
        return inter / torch.minimum(area[:, :, None], area[:, None, :])
    return inter / (area[:, :, None] + area[:, None, :] - inter)


def batched_nms(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    threshold: float,
    *,
    mode: str = "union",
    max_elements: int = 1 << 25,
) -> Tensor:
    """Greedy non-maximum suppression done independently inside each group, all groups at once.

    A box is dropped when its overlap with a kept box of the same group ranked before it exceeds ``threshold``.
    Ranking: score descending, ties by input order.

    Args:
        boxes: (N, 4) float ``x1, y1, x2, y2``.
        scores: (N,) float.
        groups: (N,) int64 group id (e.g. frame index); boxes of different groups never suppress each other.
        threshold: overlap above which the lower-ranked box is suppressed.
        mode: ``"union"`` (IoU, areas ``(x2-x1)*(y2-y1)`` as torchvision) or ``"min"`` (intersection over the
            smaller area, ``+1`` pixel areas, as MTCNN's last stage).
        max_elements: bound on ``groups_per_chunk * L**2`` of one pairwise-overlap chunk (memory).

    Returns:
        (K,) int64 indices of the kept boxes, ordered by group, then by rank.
    """
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', got {mode!r}")
    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.zeros((0,), dtype=torch.int64, device=device)
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    _, inv, counts = torch.unique_consecutive(groups[order], return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=device) - starts[inv]
    sorted_boxes = boxes[order].float()

    counts_host = counts.tolist()
    offsets = [0, *itertools.accumulate(counts_host)]
    kept: list[Tensor] = []
    g0 = 0
    while g0 < len(counts_host):
        # grow the chunk of groups while the padded (G, L, L) overlap stays within budget
        g1, lmax = g0 + 1, counts_host[g0]
        while g1 < len(counts_host):
            l_new = max(lmax, counts_host[g1])
            if (g1 + 1 - g0) * l_new * l_new > max_elements:
                break
            g1, lmax = g1 + 1, l_new
        p0, p1 = offsets[g0], offsets[g1]
        pos = torch.arange(p0, p1, device=device)
        padded = torch.full((g1 - g0, lmax), -1, dtype=torch.int64, device=device)
        padded[inv[p0:p1] - g0, rank[p0:p1]] = pos
        valid = padded >= 0
        pboxes = sorted_boxes[padded.clamp(min=0)]  # (G, L, 4)
        over = _pairwise_overlap(pboxes, mode) > threshold  # (G, L, L): row j suppresses column i
        upper = torch.ones(lmax, lmax, dtype=torch.bool, device=device).triu(diagonal=1)
        over &= upper & valid[:, :, None] & valid[:, None, :]
        over_f = over.float()
        keep = valid
        # fixed point of keep[i] = valid[i] and not any_j(keep[j] and over[j, i]); exact after <= L rounds,
        # in practice a handful (the length of the longest suppression chain)
        for _ in range(lmax + 1):
            suppressed = torch.bmm(keep.float()[:, None, :], over_f)[:, 0] > 0
            new_keep = valid & ~suppressed
            if torch.equal(new_keep, keep):
                break
            keep = new_keep
        kept.append(order[padded[keep]])
        g0 = g1
    return torch.cat(kept)


def _rerec(boxes: Tensor) -> Tensor:
    """Square boxes around their centres (side = the longer side). (N, 4) -> (N, 4)."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _bbreg(boxes: Tensor, reg: Tensor) -> Tensor:
    """Apply R-Net/O-Net offsets (relative to the +1 pixel box size). (N, 4), (N, 4) -> (N, 4)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + reg * torch.stack([w, h, w, h], dim=1)


def _integral_image(img: Tensor) -> Tensor:
    """Summed-area table. img (T, C, h, w) integer-valued -> (T, C, h+1, w+1) int32 (int64 if it could overflow)."""
    t, c, h, w = img.shape
    dtype = torch.int32 if h * w * 255 < 2**31 else torch.int64
    table = torch.zeros((t, c, h + 1, w + 1), dtype=dtype, device=img.device)
    table[:, :, 1:, 1:] = img.to(dtype).cumsum(2, dtype=dtype).cumsum(3, dtype=dtype)
    return table


def _bins(start: Tensor, length: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Adaptive-pooling bins: (N,) start, (N,) length -> (N, size) first and one-past-last source index."""
    i = torch.arange(size, device=start.device)
    lo = torch.div(i[None] * length[:, None], size, rounding_mode="floor")
    hi = torch.div((i[None] + 1) * length[:, None] + size - 1, size, rounding_mode="floor")
    return start[:, None] + lo, start[:, None] + hi


def crop_resize_area(table: Tensor, frame_ids: Tensor, regions: Tensor, size: int) -> Tensor:
    """Crop regions of several frames and resample each to ``size x size`` with area interpolation.

    Equivalent to ``F.interpolate(img[f, :, y0:y1, x0:x1][None], (size, size), mode="area")`` per region
    (adaptive average pooling), computed for all regions at once from the integral image.

    Args:
        table: (T, C, h+1, w+1) integer summed-area table of the frames (see ``_integral_image``).
        frame_ids: (N,) int64 frame of each region.
        regions: (N, 4) int64 ``x0, y0, x1, y1`` (half-open, inside the frame, non-empty).
        size: output side.

    Returns:
        (N, C, size, size) float32.
    """
    t, c, hp1, wp1 = table.shape
    flat = table.reshape(-1)
    x0, y0, x1, y1 = regions.unbind(1)
    r0, r1 = _bins(y0, y1 - y0, size)  # (N, size)
    c0, c1 = _bins(x0, x1 - x0, size)
    plane = (frame_ids[:, None] * c + torch.arange(c, device=table.device)[None]) * hp1  # (N, C)

    def corner(r: Tensor, col: Tensor) -> Tensor:
        row_off = (plane[:, :, None] + r[:, None, :]) * wp1  # (N, C, size)
        return flat[row_off[:, :, :, None] + col[:, None, None, :]]  # (N, C, size, size)

    total = corner(r1, c1) - corner(r0, c1) - corner(r1, c0) + corner(r0, c0)
    area = (r1 - r0)[:, None, :, None] * (c1 - c0)[:, None, None, :]
    return total.float() / area.float()


def resize_like_pil(img: Tensor, height: int, width: int) -> Tensor:
    """Resize like PIL's ``Image.resize`` default (antialiased bicubic, a=-0.5) on 8-bit images.

    PIL resamples horizontally, rounds and clips to 8 bits, then resamples vertically; doing the same two passes
    with ``interpolate(mode="bicubic", antialias=True)`` matches it to within 1 grey level (a fraction of a
    percent of the pixels differ, by fixed-point rounding).

    Args:
        img: (T, C, H, W) float32 with integer values 0..255.
        height: output height.
        width: output width.

    Returns:
        (T, C, height, width) float32 with integer values 0..255.
    """
    if img.shape[3] != width:
        img = F.interpolate(
            img, size=(img.shape[2], width), mode="bicubic", align_corners=False, antialias=True
        )
        img = img.round_().clamp_(0, 255)
    if img.shape[2] != height:
        img = F.interpolate(img, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
        img = img.round_().clamp_(0, 255)
    return img


# ---------------------------------------------------------------------------------------------------------------
# detector
# ---------------------------------------------------------------------------------------------------------------
class MTCNN(nn.Module):
    """Batched MTCNN: all frames of a clip through the whole cascade at once.

    Args:
        device: torch device for the networks and the whole cascade.
        thresholds: P-Net, R-Net, O-Net score thresholds (default: the original MINTIME's 0.85/0.95/0.95).
        min_face_size: smallest face side searched, in pixels of the (downscaled) detection image.
        factor: pyramid scale step.
        weights_dir: folder with ``pnet.pt``, ``rnet.pt``, ``onet.pt`` (default: the facenet-pytorch wheel's).
        max_batch_frames: frames per cascade pass (bounds memory; larger inputs are chunked).
        max_batch_crops: patches per R-Net / O-Net forward and per resampling step.
    """

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        min_face_size: int = 20,
        factor: float = 0.709,
        weights_dir: str | Path | None = None,
        max_batch_frames: int = 32,
        max_batch_crops: int = 2048,
    ) -> None:
        super().__init__()
        if len(thresholds) != 3:
            raise ValueError(f"thresholds must have 3 values (P, R, O), got {thresholds!r}")
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.thresholds = tuple(float(t) for t in thresholds)
        self.min_face_size = int(min_face_size)
        self.factor = float(factor)
        self.max_batch_frames = int(max_batch_frames)
        self.max_batch_crops = int(max_batch_crops)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        wdir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
        for name in ("pnet", "rnet", "onet"):
            path = wdir / f"{name}.pt"
            if not path.is_file():
                raise FileNotFoundError(f"MTCNN weights {path} not found")
            state = torch.load(path, map_location="cpu", weights_only=True)
            getattr(self, name).load_state_dict(state, strict=True)
        self.device = torch.device(device)
        self.eval().to(self.device)

    # -- public API --------------------------------------------------------------------------------------------
    def forward(self, frames: np.ndarray | Tensor, *, scale: float = 0.5) -> list[FrameDetections]:
        """Same as :meth:`detect`."""
        return self.detect(frames, scale=scale)

    @torch.inference_mode()
    def detect(
        self,
        frames: np.ndarray | Tensor,
        *,
        scale: float = 0.5,
        max_batch_frames: int | None = None,
        thresholds: Sequence[float] | None = None,
    ) -> list[FrameDetections]:
        """Detect faces on every frame.

        Args:
            frames: (T, H, W, 3) uint8 RGB (numpy or torch, CPU or CUDA); one (H, W, 3) frame is accepted too.
            scale: detection resolution factor (the original: 0.5); boxes are returned at full resolution.
            max_batch_frames: override of the constructor's chunk size.
            thresholds: override of the constructor's P/R/O-Net thresholds for this call.

        Returns:
            T :class:`FrameDetections`, faces sorted by area, largest first.
        """
        x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3), got {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise TypeError(f"frames must be uint8 RGB, got {x.dtype}")
        if not 0 < scale <= 4:
            raise ValueError(f"scale must be in (0, 4], got {scale}")
        chunk = max_batch_frames or self.max_batch_frames
        limits = self.thresholds if thresholds is None else tuple(float(t) for t in thresholds)
        if len(limits) != 3:
            raise ValueError(f"thresholds must have 3 values (P, R, O), got {thresholds!r}")
        out: list[FrameDetections] = []
        for s in range(0, x.shape[0], chunk):
            out.extend(self._detect_batch(x[s : s + chunk].to(self.device), scale, limits))
        return out

    def pyramid_scales(self, height: int, width: int) -> list[float]:
        """Image pyramid factors for a detection image of ``height x width`` (facenet-pytorch's rule)."""
        m = 12.0 / self.min_face_size
        minl = min(height, width) * m
        scales, s = [], m
        while minl >= 12:
            scales.append(s)
            s *= self.factor
            minl *= self.factor
        return scales

    # -- cascade -----------------------------------------------------------------------------------------------
    def _run_crops(self, net: nn.Module, table: Tensor, fid: Tensor, regions: Tensor, size: int) -> tuple:
        """Resample patches and run ``net`` on them in chunks; returns the concatenated outputs."""
        outs = []
        for s in range(0, fid.shape[0], self.max_batch_crops):
            patch = crop_resize_area(
                table, fid[s : s + self.max_batch_crops], regions[s : s + self.max_batch_crops], size
            )
            outs.append(net((patch - 127.5) * 0.0078125))
        return tuple(torch.cat(v) for v in zip(*outs, strict=True))

    @staticmethod
    def _patch_regions(boxes: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
        """Integer patch of each box clipped to the image (facenet ``pad``). -> regions (N, 4) int64, valid (N,)."""
        b = boxes.trunc().long()
        x0 = b[:, 0].clamp(min=1) - 1
        y0 = b[:, 1].clamp(min=1) - 1
        x1 = b[:, 2].clamp(max=width)
        y1 = b[:, 3].clamp(max=height)
        valid = (x1 > x0) & (y1 > y0)
        return torch.stack([x0, y0, x1, y1], dim=1), valid

    def _stage_one(self, img: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
        """P-Net on the whole pyramid. img (T, 3, h, w) float -> boxes (K, 4), frame ids (K,)."""
        t, _, h, w = img.shape
        dev = img.device
        boxes, scores, regs, fids, groups = [], [], [], [], []
        for si, sc in enumerate(self.pyramid_scales(h, w)):
            level = F.interpolate(img, size=(int(h * sc + 1), int(w * sc + 1)), mode="area")
            reg, prob = self.pnet((level - 127.5) * 0.0078125)
            mask = prob >= threshold  # (T, h', w')
            idx = mask.nonzero()  # (K, 3): frame, row, col
            if idx.shape[0] == 0:
                continue
            cell = idx[:, 1:].to(reg.dtype).flip(1)  # (K, 2) x, y in the output map
            q1 = ((2 * cell + 1) / sc).floor()
            q2 = ((2 * cell + 12) / sc).floor()
            boxes.append(torch.cat([q1, q2], dim=1))
            scores.append(prob[mask])
            regs.append(reg.permute(0, 2, 3, 1)[mask])
            fids.append(idx[:, 0])
            groups.append(idx[:, 0] + si * t)
        if not boxes:
            return torch.zeros((0, 4), device=dev), torch.zeros((0,), dtype=torch.int64, device=dev)
        boxes_t, scores_t, regs_t = torch.cat(boxes), torch.cat(scores), torch.cat(regs)
        fid, group = torch.cat(fids), torch.cat(groups)
        keep = batched_nms(boxes_t, scores_t, group, 0.5)  # per scale and frame
        boxes_t, scores_t, regs_t, fid = boxes_t[keep], scores_t[keep], regs_t[keep], fid[keep]
        keep = batched_nms(boxes_t, scores_t, fid, 0.7)  # per frame, across scales
        boxes_t, regs_t, fid = boxes_t[keep], regs_t[keep], fid[keep]
        bw = boxes_t[:, 2] - boxes_t[:, 0]
        bh = boxes_t[:, 3] - boxes_t[:, 1]
        boxes_t = boxes_t + regs_t * torch.stack([bw, bh, bw, bh], dim=1)
        return _rerec(boxes_t), fid

    def _detect_batch(
        self, frames: Tensor, scale: float, thresholds: tuple[float, ...]
    ) -> list[FrameDetections]:
        """The whole cascade on (T, H, W, 3) uint8 frames already on the device."""
        t, full_h, full_w, _ = frames.shape
        img = frames.permute(0, 3, 1, 2).float()
        h, w = (int(full_h * scale), int(full_w * scale)) if scale != 1.0 else (full_h, full_w)
        if h < 1 or w < 1:
            return [FrameDetections.empty() for _ in range(t)]
        if (h, w) != (full_h, full_w):
            img = resize_like_pil(img, h, w)

        # stage 1: P-Net
        boxes, fid = self._stage_one(img, thresholds[0])
        if boxes.shape[0] == 0:
            return [FrameDetections.empty() for _ in range(t)]
        table = _integral_image(img)

        # stage 2: R-Net on all candidates of all frames
        regions, valid = self._patch_regions(boxes, w, h)
        boxes, fid, regions = boxes[valid], fid[valid], regions[valid]
        if boxes.shape[0] == 0:
            return [FrameDetections.empty() for _ in range(t)]
        reg, prob = self._run_crops(self.rnet, table, fid, regions, 24)
        ok = prob > thresholds[1]
        boxes, fid, reg, prob = boxes[ok], fid[ok], reg[ok], prob[ok]
        keep = batched_nms(boxes, prob, fid, 0.7)
        boxes = _rerec(_bbreg(boxes[keep], reg[keep]))
        fid = fid[keep]

        # stage 3: O-Net
        regions, valid = self._patch_regions(boxes, w, h)
        boxes, fid, regions = boxes[valid], fid[valid], regions[valid]
        if boxes.shape[0] == 0:
            return [FrameDetections.empty() for _ in range(t)]
        reg, marks, prob = self._run_crops(self.onet, table, fid, regions, 48)
        ok = prob > thresholds[2]
        boxes, fid, reg, marks, prob = boxes[ok], fid[ok], reg[ok], marks[ok], prob[ok]
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        px = bw[:, None] * marks[:, :5] + boxes[:, 0:1] - 1
        py = bh[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1
        points = torch.stack([px, py], dim=2)  # (N, 5, 2)
        boxes = _bbreg(boxes, reg)
        keep = batched_nms(boxes, prob, fid, 0.7, mode="min")
        boxes, fid, points, prob = boxes[keep], fid[keep], points[keep], prob[keep]

        # sort by frame, then area (largest first); back to full resolution
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = torch.argsort(area, descending=True, stable=True)
        order = order[torch.argsort(fid[order], stable=True)]
        sx, sy = full_w / w, full_h / h
        factor = torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)
        boxes_np = (boxes[order] * factor).cpu().numpy().astype(np.float32, copy=False)
        points_np = (points[order] * factor[:2]).cpu().numpy().astype(np.float32, copy=False)
        prob_np = prob[order].cpu().numpy().astype(np.float32, copy=False)
        counts = torch.bincount(fid, minlength=t).tolist()
        out, s = [], 0
        for n in counts:
            out.append(FrameDetections(boxes_np[s : s + n], prob_np[s : s + n], points_np[s : s + n]))
            s += n
        logger.debug("MTCNN: %d frames %dx%d -> %d faces", t, w, h, s)
        return out
