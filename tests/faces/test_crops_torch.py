"""Batched tensor crops against today's OpenCV crops (:mod:`mintime.faces.crops`).

Tolerance: the outputs are integers 0..255 (rounded like OpenCV's 8-bit result); a value may differ by at most
1 grey level, and at most 1 value in 10^4 may differ at all. Measured on real frames with crops from 22 to 721
pixels (INTER_AREA and INTER_CUBIC): max 1, 3e-6 of the values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mintime.faces import crops
from mintime.faces.crops_torch import crop_resize_pad, resize_pad_weights, square_crop_boxes

MAX_DIFF = 1.0
MAX_DIFF_FRACTION = 1e-4


def _reference(frames: np.ndarray, boxes: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return crops.to_model_input([crops.crop_face(frames[p], b) for b, p in zip(boxes, pos, strict=True)])


def _textured_frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 127 + 80 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None]
    return np.clip(base + rng.normal(0, 25, (t, h, w, 3)), 0, 255).astype(np.uint8)


def _random_boxes(rng: np.random.Generator, n: int, w: int, h: int, lo: float, hi: float) -> np.ndarray:
    side = rng.uniform(lo, hi, n)
    x1, y1 = rng.uniform(-0.2 * side, w - 0.8 * side), rng.uniform(-0.2 * side, h - 0.8 * side)
    return np.stack([x1, y1, x1 + side * rng.uniform(0.7, 1.0, n), y1 + side * rng.uniform(1.0, 1.3, n)], 1)


def _assert_close(ours: torch.Tensor, ref: np.ndarray) -> None:
    diff = np.abs(ours.cpu().numpy() - ref)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    assert diff.max() <= MAX_DIFF
    assert (diff > 0).mean() <= MAX_DIFF_FRACTION


def test_crop_boxes_equal_square_crop_box() -> None:
    rng = np.random.default_rng(0)
    w, h = 1280, 720
    boxes = np.concatenate(
        [
            _random_boxes(rng, 5000, w, h, 1, 700),
            [[-50, -40, -10, -5], [w + 5, 10, w + 40, 50], [10.9, 20.2, 11.1, 60.7], [0, 0, w, h]],
        ]
    )
    ours = square_crop_boxes(boxes, np.array([w, h]))
    ref = np.array([crops.square_crop_box(b, w, h) for b in boxes])
    assert np.array_equal(ours, ref)


def test_resize_weights_are_a_partition_of_unity() -> None:
    for h, w in ((300, 300), (301, 299), (37, 40), (224, 224), (224, 223), (1000, 700)):
        wy, wx = resize_pad_weights(h, w, 224)
        rows, cols = wy.sum(1), wx.sum(1)
        kept_rows, kept_cols = rows > 0, cols > 0
        assert np.allclose(rows[kept_rows], 1.0, atol=1e-6) and np.allclose(cols[kept_cols], 1.0, atol=1e-6)
        assert max(kept_rows.sum(), kept_cols.sum()) == 224  # the longer side fills the output


def test_parity_on_synthetic_frames() -> None:
    rng = np.random.default_rng(1)
    frames = _textured_frames(3, 360, 640)
    boxes = np.concatenate(
        [_random_boxes(rng, 12, 640, 360, 10, 120), _random_boxes(rng, 6, 640, 360, 150, 330)]
    )
    pos = rng.integers(0, 3, len(boxes))
    ours, crop_boxes = crop_resize_pad(torch.from_numpy(frames), boxes, pos)
    _assert_close(ours, _reference(frames, boxes, pos))
    assert np.array_equal(crop_boxes, np.array([crops.square_crop_box(b, 640, 360) for b in boxes]))
    # RGB order kept on request; exact floats on request
    rgb, _ = crop_resize_pad(frames, boxes[:2], pos[:2], bgr=False)
    assert torch.equal(rgb, ours[:2].flip(1))
    exact, _ = crop_resize_pad(frames, boxes[:2], pos[:2], round_like_uint8=False)
    assert (exact.clamp(0, 255) - ours[:2]).abs().max() <= 0.5 + 1e-4  # cubic overshoots are clipped


@pytest.mark.needs_data
def test_parity_on_real_frames(data_dir: Path) -> None:
    from mintime.video import decode_sampled

    frames = decode_sampled(data_dir / "videos" / "two_people_one_fake_720p.mp4", num_frames=2).frames
    rng = np.random.default_rng(2)
    h, w = frames.shape[1:3]
    # crops from 20 to 700 px: INTER_CUBIC below 224, INTER_AREA above, exactly 224 untouched
    boxes = np.concatenate([_random_boxes(rng, 16, w, h, 15, 170), _random_boxes(rng, 16, w, h, 170, 560)])
    boxes = np.concatenate([boxes, [[400, 200, 568, 368]]])  # crop side 224
    pos = rng.integers(0, 2, len(boxes))
    ours, _ = crop_resize_pad(torch.from_numpy(frames), boxes, pos)
    _assert_close(ours, _reference(frames, boxes, pos))


def test_bad_inputs() -> None:
    frames = np.zeros((2, 100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="empty face crop"):
        crop_resize_pad(frames, [[200, 200, 250, 250]], [0])
    with pytest.raises(ValueError, match="out of range"):
        crop_resize_pad(frames, [[10, 10, 50, 50]], [2])
    with pytest.raises(ValueError, match="one frame position per box"):
        crop_resize_pad(frames, [[10, 10, 50, 50]], [0, 1])
    out, boxes = crop_resize_pad(frames, np.zeros((0, 4)), [])
    assert out.shape == (0, 3, 224, 224) and boxes.shape == (0, 4)


@pytest.mark.needs_cuda
def test_cuda_equals_cpu() -> None:
    rng = np.random.default_rng(3)
    frames = torch.from_numpy(_textured_frames(2, 360, 640))
    boxes = _random_boxes(rng, 8, 640, 360, 20, 300)
    pos = rng.integers(0, 2, 8)
    cpu, _ = crop_resize_pad(frames, boxes, pos)
    gpu, _ = crop_resize_pad(frames.cuda(), boxes, pos)
    assert gpu.is_cuda
    assert (gpu.cpu() - cpu).abs().max() <= 1.0  # rounding of float sums may differ by one level
