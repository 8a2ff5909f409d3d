"""Face crops for the backbone: the original MINTIME's square crop with a 1/3 margin, resize and pad to 224.

* :func:`square_crop_box` / :func:`crop_face`: the crop of ``extract_crops.py`` (original spec §5.2), applied to
  the face's **own** frame (the original applied the boxes of a later frame to the pixels of the sampled one).
* :func:`resize_for_model`: the validation/test transform of the original dataset (§4.8): IsotropicResize(224)
  then albumentations ``PadIfNeeded(224, 224, BORDER_CONSTANT, 0)`` (centred padding) then ``Resize(224, 224)``
  (a no-op after the first two).
* :func:`to_model_input`: the backbone contract, ``(N, 3, 224, 224)`` float32 **BGR** 0..255 (the original read
  its PNG crops with OpenCV, so its networks saw BGR).

The face-size ratio used by the size embedding is computed from ``crop_h x crop_w`` (the returned crop box) by
:func:`mintime.slots.size_ratio_percent`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["square_crop_box", "crop_face", "resize_for_model", "to_model_input"]

logger = logging.getLogger(__name__)


def square_crop_box(
    box: Sequence[float] | np.ndarray, frame_w: int, frame_h: int
) -> tuple[int, int, int, int]:
    """The original's square crop around a face box, with a 1/3 margin, clipped to the frame.

    Steps (§5.2): integer box (``int()``, truncation); margins ``p_w = w // 3`` and ``p_h = h // 3`` on each
    side; the margin of the longer side of the (top/left-clipped) crop is reduced by half the difference to make
    it square; the crop is clipped to the frame (the original clipped the right/bottom implicitly by numpy
    slicing); if it is still not square, ``diff // 2`` pixels are trimmed from both ends of the longer side, or
    one pixel (top row / right column) when ``diff`` is 1. The result can stay one pixel off square.

    Args:
        box: ``x1, y1, x2, y2`` in full-resolution pixels (a detection box of this frame).
        frame_w: frame width in pixels.
        frame_h: frame height in pixels.

    Returns:
        ``(x0, y0, x1, y1)`` ints, half-open (``frame[y0:y1, x0:x1]``); empty (``x1 <= x0`` or ``y1 <= y0``) only
        for a box that lies outside the frame.
    """
    xmin, ymin, xmax, ymax = (int(v) for v in box[:4])
    w, h = xmax - xmin, ymax - ymin
    p_h, p_w = h // 3, w // 3
    crop_h = (ymax + p_h) - max(ymin - p_h, 0)
    crop_w = (xmax + p_w) - max(xmin - p_w, 0)
    if crop_h > crop_w:
        p_h -= int((crop_h - crop_w) / 2)
    else:
        p_w -= int((crop_w - crop_h) / 2)
    y0, y1 = max(ymin - p_h, 0), min(max(ymax + p_h, 0), frame_h)
    x0, x1 = max(xmin - p_w, 0), min(max(xmax + p_w, 0), frame_w)
    ch, cw = y1 - y0, x1 - x0
    if ch <= 0 or cw <= 0:  # the box lies outside the frame
        return int(x0), int(y0), int(x0), int(y0)
    if ch > cw:
        diff = int((ch - cw) / 2)
        if diff > 0:
            y0, y1 = y0 + diff, y1 - diff
        else:
            y0 += 1
    elif cw > ch:
        diff = int((cw - ch) / 2)
        if diff > 0:
            x0, x1 = x0 + diff, x1 - diff
        else:
            x1 -= 1
    return int(x0), int(y0), int(x1), int(y1)


def crop_face(frame: np.ndarray, box: Sequence[float] | np.ndarray) -> np.ndarray:
    """Cut the square 1/3-margin crop of a face out of its frame.

    Args:
        frame: (H, W, 3) uint8 (any channel order; returned unchanged).
        box: ``x1, y1, x2, y2`` detection box of this frame, full-resolution pixels.

    Returns:
        (h, w, 3) uint8 contiguous copy, ``h, w`` = the size of :func:`square_crop_box`.

    Raises:
        ValueError: the crop is empty (a box outside the frame).
    """
    fh, fw = frame.shape[:2]
    x0, y0, x1, y1 = square_crop_box(box, fw, fh)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty face crop for box {list(box)} in a {fw}x{fh} frame")
    return np.ascontiguousarray(frame[y0:y1, x0:x1])


def _isotropic_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Longest side to ``size`` (INTER_AREA shrinking, INTER_CUBIC enlarging), the other side truncated."""
    h, w = img.shape[:2]
    if max(h, w) == size:
        return img
    # same arithmetic as the original (float scale, int() truncation; a square side may end at size - 1)
    if w > h:
        scale = size / w
        new_w, new_h = size, int(h * scale)
    else:
        scale = size / h
        new_w, new_h = int(w * scale), size
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    return cv2.resize(img, (max(new_w, 1), max(new_h, 1)), interpolation=interpolation)


def resize_for_model(crop: np.ndarray, size: int = 224) -> np.ndarray:
    """Isotropic resize of the longest side to ``size`` and centred zero padding to ``size x size``.

    Padding follows albumentations ``PadIfNeeded`` (``top = (size - h) // 2``, bottom the rest; the same for
    left/right), value 0.

    Args:
        crop: (h, w, 3) uint8 face crop (channel order preserved).
        size: output side.

    Returns:
        (size, size, 3) uint8.
    """
    if crop.ndim != 3 or crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f"crop must be a non-empty (h, w, C) image, got shape {crop.shape}")
    img = _isotropic_resize(crop, size)
    h, w = img.shape[:2]
    top, left = max(size - h, 0) // 2, max(size - w, 0) // 2
    bottom, right = max(size - h, 0) - top, max(size - w, 0) - left
    if top or bottom or left or right:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    if img.shape[:2] != (size, size):  # albumentations Resize(size, size): only for inputs larger than size
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(img)


def to_model_input(crops_rgb: Sequence[np.ndarray] | np.ndarray, size: int = 224) -> np.ndarray:
    """Stack RGB face crops into the backbone input.

    Args:
        crops_rgb: N crops, each (h, w, 3) uint8 RGB, or one (N, size, size, 3) array; crops that are not
            ``size x size`` go through :func:`resize_for_model` first.
        size: model input side.

    Returns:
        (N, 3, size, size) float32, **BGR**, values 0..255 (no normalisation).
    """
    items = [resize_for_model(c, size) if c.shape[:2] != (size, size) else c for c in crops_rgb]
    if not items:
        return np.zeros((0, 3, size, size), np.float32)
    batch = np.stack(items)  # (N, size, size, 3) RGB
    if batch.shape[-1] != 3:
        raise ValueError(f"crops must have 3 channels, got {batch.shape}")
    return np.ascontiguousarray(batch[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
