"""The backbone's face crops as batched tensor ops on the frames' device (CPU or CUDA).

The same crops as :mod:`mintime.faces.crops` (square crop with a 1/3 margin, isotropic resize of the longer side
to 224 with OpenCV's ``INTER_AREA`` when shrinking and ``INTER_CUBIC`` when enlarging, centred zero padding,
BGR float 0..255), computed for all faces of a clip at once from a ``(T, H, W, 3)`` uint8 frames tensor:

* :func:`square_crop_boxes`: :func:`mintime.faces.crops.square_crop_box` for N boxes at once (same integer
  arithmetic, numpy).
* :func:`resize_pad_weights`: the resize and the padding of one crop as two matrices, ``out = Wy @ crop @ Wx.T``
  per channel, built from OpenCV's resampling tables (``INTER_AREA``: the pixel-coverage weights of
  ``computeResizeAreaTab``; ``INTER_CUBIC``: Keys' cubic with a = -0.75 at ``(x + 0.5) / scale - 0.5``, border
  pixels repeated); the rows and columns of the padding are zero, so a weight pair maps a crop straight to the
  padded ``size x size`` image.
* :func:`crop_resize_pad`: copies the crops out of their frames into zero-padded batches of similar sizes and
  applies their weight pairs with two batched matrix products per batch (dense products beat running sums
  and gathers on CPUs: 57 vs 208-395 ms for 32 crops of 280 px, one thread); the result is rounded to integers like OpenCV's 8-bit output
  (optional) and returned as ``(N, 3, size, size)`` float32 in BGR order, the backbone contract.

Differences from OpenCV's 8-bit arithmetic (fixed-point cubic coefficients, float32 accumulation) leave
isolated one-level differences in the rounded output; ``tests/faces/test_crops_torch.py`` states the measured
tolerance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["square_crop_boxes", "resize_pad_weights", "crop_resize_pad"]

logger = logging.getLogger(__name__)


def square_crop_boxes(boxes: np.ndarray | Sequence[Sequence[float]], frame_sizes: np.ndarray) -> np.ndarray:
    """:func:`mintime.faces.crops.square_crop_box` for many boxes (same integer arithmetic, vectorised).

    Args:
        boxes: (N, 4) ``x1, y1, x2, y2`` detection boxes (full-resolution pixels).
        frame_sizes: (N, 2) or (2,) ``W, H`` of each box's frame.

    Returns:
        (N, 4) int64 ``x0, y0, x1, y1`` half-open crop boxes; empty (``x1 <= x0`` or ``y1 <= y0``) only for
        boxes outside their frame.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sizes = np.broadcast_to(np.asarray(frame_sizes, dtype=np.int64).reshape(-1, 2), (len(b), 2))
    fw, fh = sizes[:, 0], sizes[:, 1]
    xmin, ymin, xmax, ymax = (
        np.trunc(b[:, k]).astype(np.int64) for k in range(4)
    )  # Python int(): truncation
    w, h = xmax - xmin, ymax - ymin
    p_h, p_w = h // 3, w // 3
    crop_h = (ymax + p_h) - np.maximum(ymin - p_h, 0)
    crop_w = (xmax + p_w) - np.maximum(xmin - p_w, 0)
    half = np.trunc((crop_h - crop_w) / 2).astype(np.int64)  # int((a - b) / 2): truncation toward zero
    taller = crop_h > crop_w
    p_h = np.where(taller, p_h - half, p_h)
    p_w = np.where(taller, p_w, p_w + half)  # -= int((crop_w - crop_h) / 2) = += half
    y0, y1 = np.maximum(ymin - p_h, 0), np.minimum(np.maximum(ymax + p_h, 0), fh)
    x0, x1 = np.maximum(xmin - p_w, 0), np.minimum(np.maximum(xmax + p_w, 0), fw)
    ch, cw = y1 - y0, x1 - x0
    empty = (ch <= 0) | (cw <= 0)
    d = np.trunc(np.abs(ch - cw) / 2).astype(np.int64)
    tall, wide = (ch > cw) & ~empty, (cw > ch) & ~empty
    y0 = np.where(tall, np.where(d > 0, y0 + d, y0 + 1), y0)
    y1 = np.where(tall & (d > 0), y1 - d, y1)
    x0 = np.where(wide & (d > 0), x0 + d, x0)
    x1 = np.where(wide, np.where(d > 0, x1 - d, x1 - 1), x1)
    x1, y1 = np.where(empty, x0, x1), np.where(empty, y0, y1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) OpenCV ``INTER_AREA`` weights for shrinking (``computeResizeAreaTab``).

    Output pixel o covers source interval [o s, (o + 1) s), s = n_in / n_out; each source pixel gets its
    overlap (partial overlaps under 1e-3 dropped, as OpenCV) divided by the cell width ``min(s, n_in - o s)``.
    """
    scale = n_in / n_out
    lo = np.arange(n_out, dtype=np.float64)[:, None] * scale
    hi = lo + scale
    src = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, src + 1.0) - np.maximum(lo, src), 0.0, None)
    overlap[overlap < 1e-3] = 0.0
    return overlap / np.minimum(scale, n_in - lo)


def _cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) OpenCV ``INTER_CUBIC`` weights (Keys, a = -0.75, border pixels repeated)."""
    a = -0.75
    fx = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    sx = np.floor(fx)
    t = fx - sx
    c0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    c1 = ((a + 2) * t - (a + 3)) * t * t + 1
    c2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    coeffs = np.stack([c0, c1, c2, 1.0 - c0 - c1 - c2], axis=1)  # (n_out, 4)
    cols = np.clip(sx.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
    wts = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(wts, (np.repeat(np.arange(n_out), 4), cols.ravel()), coeffs.ravel())
    return wts


def _resize_matrix(n_in: int, n_out: int, enlarge: bool) -> np.ndarray:
    if n_in == n_out:
        return np.eye(n_out, dtype=np.float64)
    return _cubic_matrix(n_in, n_out) if enlarge else _area_matrix(n_in, n_out)


def _resized_geometry(h: int, w: int, size: int) -> tuple[int, int, int, int, bool]:
    """(new_h, new_w, top, left, enlarge) of :func:`mintime.faces.crops.resize_for_model` for an h x w crop."""
    if h <= 0 or w <= 0:
        raise ValueError(f"crop must be non-empty, got {h}x{w}")
    if max(h, w) == size:
        new_h, new_w, enlarge = h, w, False
    elif w > h:
        scale = size / w
        new_w, new_h, enlarge = size, int(h * scale), scale > 1
    else:
        scale = size / h
        new_w, new_h, enlarge = int(w * scale), size, scale > 1
    new_h, new_w = max(new_h, 1), max(new_w, 1)
    if new_h > size or new_w > size:  # cannot happen for the sizes above; crops.py would resize again
        raise ValueError(f"resized crop {new_h}x{new_w} larger than {size}")
    return new_h, new_w, (size - new_h) // 2, (size - new_w) // 2, enlarge


def resize_pad_weights(h: int, w: int, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """The resize + centred padding of an ``h x w`` crop as two matrices (see the module docstring).

    Same sizes as :func:`mintime.faces.crops.resize_for_model`: the longer side becomes ``size``, the other
    ``int(side * size / longer)``; ``INTER_CUBIC`` if that enlarges, ``INTER_AREA`` otherwise; padding
    ``top = (size - h') // 2``, ``left = (size - w') // 2``.

    Args:
        h: crop height (> 0).
        w: crop width (> 0).
        size: output side.

    Returns:
        ``Wy`` (size, h) and ``Wx`` (size, w) float64; ``padded = Wy @ crop @ Wx.T`` per channel.
    """
    new_h, new_w, top, left, enlarge = _resized_geometry(h, w, size)
    wy = np.zeros((size, h), dtype=np.float64)
    wx = np.zeros((size, w), dtype=np.float64)
    wy[top : top + new_h] = _resize_matrix(h, new_h, enlarge)
    wx[left : left + new_w] = _resize_matrix(w, new_w, enlarge)
    return wy, wx


def _size_groups(sides: np.ndarray, ratio: float) -> list[np.ndarray]:
    """Indices grouped so that within a group the largest crop side is at most ``ratio`` x the smallest."""
    order = np.argsort(sides, kind="stable")
    groups: list[list[int]] = []
    for i in order.tolist():
        if groups and sides[i] <= ratio * sides[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [np.asarray(g, dtype=np.int64) for g in groups]


def crop_resize_pad(
    frames: Tensor | np.ndarray,
    boxes: Tensor | np.ndarray | Sequence[Sequence[float]],
    frame_pos: Tensor | np.ndarray | Sequence[int],
    *,
    size: int = 224,
    round_like_uint8: bool = True,
    bgr: bool = True,
    group_ratio: float = 1.25,
) -> tuple[Tensor, np.ndarray]:
    """The backbone input for N faces: square 1/3-margin crops, resized and padded to ``size``, BGR float.

    Args:
        frames: (T, H, W, 3) uint8 RGB frames (torch on any device, or numpy for the CPU).
        boxes: (N, 4) ``x1, y1, x2, y2`` detection boxes of the faces, in their own frame's pixels.
        frame_pos: (N,) position of each face's frame in ``frames``.
        size: output side (224, the backbone's).
        round_like_uint8: round to integers and clip to 0..255 after the resize, as the 8-bit OpenCV pipeline
            does (:func:`mintime.faces.crops.to_model_input`); False keeps the exact float resample.
        bgr: flip the channels to BGR (the backbone contract); False keeps the frames' order.
        group_ratio: faces whose crop sides are within this ratio are resampled in one batch (padded to the
            largest); larger ratios mean fewer, more wasteful batches.

    Returns:
        ``(N, 3, size, size)`` float32 on the frames' device, values 0..255, and the (N, 4) int64 crop boxes
        ``x0, y0, x1, y1`` (for the size ratio of :func:`mintime.slots.size_ratio_percent`).

    Raises:
        ValueError: bad shapes, a frame position out of range, or a box outside its frame (empty crop).
    """
    if not isinstance(frames, Tensor):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {tuple(frames.shape)}")
    device = frames.device
    box_np = (boxes.detach().cpu().numpy() if isinstance(boxes, Tensor) else np.asarray(boxes)).astype(
        np.float64
    )
    box_np = box_np.reshape(-1, 4)
    pos = (frame_pos.cpu().numpy() if isinstance(frame_pos, Tensor) else np.asarray(frame_pos)).astype(
        np.int64
    )
    pos = pos.reshape(-1)
    n = len(box_np)
    if len(pos) != n:
        raise ValueError(f"need one frame position per box, got {len(pos)} positions for {n} boxes")
    if n and (pos.min() < 0 or pos.max() >= frames.shape[0]):
        raise ValueError(f"frame positions out of range for {frames.shape[0]} frames: {pos.tolist()}")
    h_img, w_img = int(frames.shape[1]), int(frames.shape[2])
    crop_boxes = square_crop_boxes(box_np, np.array([w_img, h_img]))
    out = torch.zeros(n, 3, size, size, dtype=torch.float32, device=device)
    if n == 0:
        return out, crop_boxes
    ch = crop_boxes[:, 3] - crop_boxes[:, 1]
    cw = crop_boxes[:, 2] - crop_boxes[:, 0]
    if (ch <= 0).any() or (cw <= 0).any():
        bad = int(np.flatnonzero((ch <= 0) | (cw <= 0))[0])
        raise ValueError(f"empty face crop for box {box_np[bad].tolist()} in a {w_img}x{h_img} frame")
    # float32 products are exact enough (|error| < 1e-4 grey levels measured on 280 px crops) and the fastest
    # on CPUs; on a GPU that lets float32 products use TF32 (10-bit mantissas), float64 instead
    tf32 = device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    dtype = torch.float64 if tf32 else torch.float32
    # faces of similar crop size share one zero-padded batch and two batched matrix products
    for group in _size_groups(np.maximum(ch, cw), group_ratio):
        hm, wm = int(ch[group].max()), int(cw[group].max())
        crops = torch.zeros(len(group), 3, hm, wm, dtype=dtype, device=device)
        wy = np.zeros((len(group), size, hm), dtype=np.float64)
        wx = np.zeros((len(group), wm, size), dtype=np.float64)
        for j, k in enumerate(group.tolist()):
            x0, y0, x1, y1 = (int(v) for v in crop_boxes[k])
            crops[j, :, : y1 - y0, : x1 - x0] = frames[int(pos[k]), y0:y1, x0:x1].permute(2, 0, 1)
            wy_k, wx_k = resize_pad_weights(y1 - y0, x1 - x0, size)
            wy[j, :, : y1 - y0], wx[j, : x1 - x0] = wy_k, wx_k.T
        wx_t = torch.from_numpy(wx).to(device=device, dtype=dtype)[:, None]  # (G, 1, wm, S)
        wy_t = torch.from_numpy(wy).to(device=device, dtype=dtype)[:, None]  # (G, 1, S, hm)
        out[torch.from_numpy(group).to(device)] = torch.matmul(wy_t, torch.matmul(crops, wx_t)).float()
    if round_like_uint8:
        out = out.round().clamp_(0, 255)
    if bgr:
        out = out.flip(1)
    return out.contiguous(), crop_boxes
