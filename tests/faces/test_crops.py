"""Square 1/3-margin crops, isotropic resize + centred padding, backbone input layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mintime.faces.crops import crop_face, resize_for_model, square_crop_box, to_model_input


def _original_crop(frame: np.ndarray, box) -> np.ndarray:
    """The original extract_crops arithmetic on numpy slicing (full-resolution box), as a reference."""
    xmin, ymin, xmax, ymax = (int(b) for b in box)
    w, h = xmax - xmin, ymax - ymin
    p_h, p_w = h // 3, w // 3
    crop_h = (ymax + p_h) - max(ymin - p_h, 0)
    crop_w = (xmax + p_w) - max(xmin - p_w, 0)
    if crop_h > crop_w:
        p_h -= int((crop_h - crop_w) / 2)
    else:
        p_w -= int((crop_w - crop_h) / 2)
    crop = frame[max(ymin - p_h, 0) : ymax + p_h, max(xmin - p_w, 0) : xmax + p_w]
    h, w = crop.shape[:2]
    if h > w:
        diff = int((h - w) / 2)
        crop = crop[diff:-diff, :] if diff > 0 else crop[1:, :]
    elif h < w:
        diff = int((w - h) / 2)
        crop = crop[:, diff:-diff] if diff > 0 else crop[:, :-1]
    return crop


def _coord_frame(w: int, h: int) -> np.ndarray:
    """(h, w, 3) frame whose pixels encode their own coordinates (x, y, 0), as uint16 for exactness."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint16)


def test_square_crop_box_interior_face() -> None:
    # w=60, h=90 -> margins 20/30, crop 100x150 -> p_h reduced by 25 -> 100x100 square
    assert square_crop_box((100.7, 100.2, 160.9, 190.5), 1280, 720) == (80, 95, 180, 195)


def test_square_crop_box_clipped_top_left() -> None:
    # w=h=60, p=20; top clipped at 0 -> crop 90 wide x 85 tall -> p_w 18 -> 88x85 -> trim 1 each side -> 86x85
    assert square_crop_box((10, 5, 70, 65), 1280, 720) == (1, 0, 87, 85)


def test_square_crop_box_clipped_right_bottom() -> None:
    x0, y0, x1, y1 = square_crop_box((1200, 650, 1270, 715), 1280, 720)
    assert x1 <= 1280 and y1 <= 720 and x0 >= 0 and y0 >= 0
    assert abs((x1 - x0) - (y1 - y0)) <= 1
    assert x0 <= 1200 and y0 <= 650


def test_square_crop_box_matches_original_slicing() -> None:
    rng = np.random.default_rng(0)
    fw, fh = 320, 200
    frame = _coord_frame(fw, fh)
    checked = 0
    for _ in range(500):
        w, h = rng.uniform(8, 120, size=2)
        x1, y1 = rng.uniform(-20, fw - 5), rng.uniform(-20, fh - 5)
        box = (x1, y1, x1 + w, y1 + h)
        ref = _original_crop(frame, box)
        x0, y0, xe, ye = square_crop_box(box, fw, fh)
        if ref.size == 0:  # a box (almost) outside the frame
            assert xe <= x0 or ye <= y0
            continue
        assert (ye - y0, xe - x0) == ref.shape[:2], box
        assert (ref[0, 0, 0], ref[0, 0, 1]) == (x0, y0)
        np.testing.assert_array_equal(crop_face(frame, box), ref)
        checked += 1
    assert checked > 400


def test_crop_face_is_a_copy_of_the_box_pixels() -> None:
    frame = _coord_frame(640, 360)
    crop = crop_face(frame, (300.0, 100.0, 360.0, 172.0))
    x0, y0, x1, y1 = square_crop_box((300.0, 100.0, 360.0, 172.0), 640, 360)
    assert crop.shape == (y1 - y0, x1 - x0, 3)
    assert crop[0, 0, 0] == x0 and crop[0, 0, 1] == y0 and crop[-1, -1, 0] == x1 - 1
    assert not np.shares_memory(crop, frame)
    with pytest.raises(ValueError):
        crop_face(frame, (700.0, 400.0, 760.0, 460.0))  # outside the frame


def test_resize_enlarges_with_cubic_and_pads_centred() -> None:
    crop = np.full((100, 80, 3), 200, np.uint8)
    out = resize_for_model(crop)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    # 100x80 -> 224x179 (int(80 * 2.24)); pad (224 - 179) = 45 -> 22 left, 23 right
    assert np.all(out[:, :22] == 0) and np.all(out[:, 201:] == 0)
    assert np.all(out[:, 22:201] == 200)
    gradient = np.tile(np.arange(80, dtype=np.uint8)[None, :, None] * 3, (100, 1, 3))
    ref = cv2.resize(gradient, (179, 224), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(resize_for_model(gradient)[:, 22:201], ref)


def test_resize_shrinks_with_area() -> None:
    rng = np.random.default_rng(2)
    crop = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    out = resize_for_model(crop)
    # 300x400 -> 168x224, pad 56 rows: 28 top, 28 bottom
    ref = cv2.resize(crop, (224, 168), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out[28:196], ref)
    assert np.all(out[:28] == 0) and np.all(out[196:] == 0)


def test_resize_keeps_224_and_odd_padding() -> None:
    crop = np.random.default_rng(3).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_for_model(crop), crop)
    tall = np.full(
        (224, 101, 3), 7, np.uint8
    )  # long side already 224: no resize, pad 123 -> 61 left, 62 right
    out = resize_for_model(tall)
    assert np.all(out[:, :61] == 0) and np.all(out[:, 61:162] == 7) and np.all(out[:, 162:] == 0)


def test_to_model_input_is_bgr_chw_float() -> None:
    rng = np.random.default_rng(4)
    crops = rng.integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    x = to_model_input(crops)
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], crops[..., 2])  # B first
    np.testing.assert_array_equal(x[:, 2], crops[..., 0])
    # crops of other sizes are resized first; an empty list gives an empty batch
    mixed = to_model_input([crops[0], np.full((50, 40, 3), 9, np.uint8)])
    assert mixed.shape == (2, 3, 224, 224) and mixed[1].max() == 9 and mixed[1, :, :, 0].max() == 0
    assert to_model_input([]).shape == (0, 3, 224, 224)


@pytest.mark.needs_data
def test_crops_of_real_detections(data_dir: Path) -> None:
    from mintime.faces.mtcnn import MTCNN, default_weights_dir

    try:
        wdir = default_weights_dir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    img = cv2.imread(str(data_dir / "images" / "multiface.jpg"))[:, :, ::-1].copy()
    (det,) = MTCNN(weights_dir=wdir).detect(img)
    h, w = img.shape[:2]
    for box in det.boxes:
        x0, y0, x1, y1 = square_crop_box(box, w, h)
        assert abs((x1 - x0) - (y1 - y0)) <= 1
        # the crop holds the face with a margin: 5/3 of the box's shorter side, the box inside it
        side = min(box[2] - box[0], box[3] - box[1])
        assert 1.6 * side < x1 - x0 < 1.7 * side
        assert x0 <= box[0] and y0 <= box[1] and x1 >= box[2] and y1 >= box[3]
        batch = to_model_input([resize_for_model(crop_face(img, box))])
        assert batch.shape == (1, 3, 224, 224) and batch.std() > 10
