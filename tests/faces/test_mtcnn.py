"""Batched MTCNN: building blocks against straightforward references, detections on real images and clips."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mintime.faces.mtcnn import (
    MTCNN,
    FrameDetections,
    ONet,
    PNet,
    RNet,
    batched_nms,
    crop_resize_area,
    default_weights_dir,
    resize_like_pil,
)

PORTRAITS = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham")


def _weights_dir() -> Path:
    try:
        wdir = default_weights_dir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    if not (wdir / "pnet.pt").is_file():
        pytest.skip(f"MTCNN weights not found in {wdir}")
    return wdir


@pytest.fixture(scope="module")
def mtcnn() -> MTCNN:
    return MTCNN(weights_dir=_weights_dir())


def _image(data_dir: Path, name: str) -> np.ndarray:
    img = cv2.imread(str(data_dir / "images" / f"{name}.jpg"), cv2.IMREAD_COLOR)
    assert img is not None
    return np.ascontiguousarray(img[:, :, ::-1])


def _frames(path: Path, num: int, span: int | None = None) -> np.ndarray:
    """(num, H, W, 3) uint8 RGB frames spread uniformly over the first ``span`` frames (default: all)."""
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    span = min(span or total, total)
    wanted = set(np.linspace(0, span - 1, num).round().astype(int).tolist())
    out = []
    for i in range(span):
        if not cap.grab():
            break
        if i in wanted:
            out.append(cap.retrieve()[1][:, :, ::-1])
    cap.release()
    assert len(out) == num
    return np.ascontiguousarray(np.stack(out))


# ---------------------------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------------------------
def test_networks_match_facenet_state_dicts() -> None:
    wdir = _weights_dir()
    for name, net in (("pnet", PNet()), ("rnet", RNet()), ("onet", ONet())):
        state = torch.load(wdir / f"{name}.pt", map_location="cpu", weights_only=True)
        ours = net.state_dict()
        assert list(ours) == list(state)
        assert all(ours[k].shape == state[k].shape for k in state)


def _greedy_nms_reference(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, thr: float, mode: str):
    """Plain Python greedy NMS per group (rank: score desc, ties by index)."""
    keep = []
    one = 1.0 if mode == "min" else 0.0
    for g in np.unique(groups):
        idx = [i for i in np.flatnonzero(groups == g)]
        idx.sort(key=lambda i: (-scores[i], i))
        kept: list[int] = []
        for i in idx:
            ok = True
            for j in kept:
                a, b = boxes[i], boxes[j]
                iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + one)
                ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + one)
                inter = iw * ih
                area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one)
                area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one)
                o = inter / min(area_a, area_b) if mode == "min" else inter / (area_a + area_b - inter)
                if o > thr:
                    ok = False
                    break
            if ok:
                kept.append(i)
        keep.extend(kept)
    return sorted(keep)


@pytest.mark.parametrize("mode,thr", [("union", 0.5), ("union", 0.7), ("min", 0.7)])
def test_batched_nms_matches_greedy_reference(mode: str, thr: float) -> None:
    rng = np.random.default_rng(0)
    n = 300
    xy = rng.uniform(0, 80, size=(n, 2))
    wh = rng.uniform(5, 40, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.choice(np.linspace(0.5, 1.0, 12), size=n).astype(np.float32)  # many ties
    groups = rng.integers(0, 7, size=n)
    ref = _greedy_nms_reference(boxes, scores, groups, thr, mode)
    got = batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(groups), thr, mode=mode
    )
    assert sorted(got.tolist()) == ref
    # chunking over groups (tiny memory budget) gives the same answer
    got_small = batched_nms(
        torch.from_numpy(boxes),
        torch.from_numpy(scores),
        torch.from_numpy(groups),
        thr,
        mode=mode,
        max_elements=64,
    )
    assert sorted(got_small.tolist()) == ref


def test_batched_nms_groups_and_chains() -> None:
    boxes = torch.tensor(
        [
            [0, 0, 10, 10],  # 0: best
            [1, 0, 11, 10],  # 1: suppressed by 0 (IoU 0.82)
            [2, 0, 12, 10],  # 2: overlaps 0 at IoU 0.67 (< 0.7) -> kept although 1 (suppressed) overlaps it
            [0, 0, 10, 10],  # 3: identical to 0, other group -> kept
            [0, 0, 10, 10],  # 4: identical to 0 and same score, same group, later index -> suppressed
        ],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.5, 0.9])
    groups = torch.tensor([0, 0, 0, 1, 0])
    keep = batched_nms(boxes, scores, groups, 0.7)
    assert sorted(keep.tolist()) == [0, 2, 3]
    assert batched_nms(boxes[:0], scores[:0], groups[:0], 0.7).numel() == 0


def test_crop_resize_area_equals_interpolate() -> None:
    rng = np.random.default_rng(1)
    img = torch.from_numpy(rng.integers(0, 256, size=(3, 3, 37, 53))).float()  # (T, C, h, w)
    table = torch.zeros(3, 3, 38, 54, dtype=torch.int32)
    table[:, :, 1:, 1:] = img.int().cumsum(2).cumsum(3)
    regions, fids = [], []
    for _ in range(40):
        x0, y0 = int(rng.integers(0, 50)), int(rng.integers(0, 34))
        x1, y1 = int(rng.integers(x0 + 1, 54)), int(rng.integers(y0 + 1, 38))
        regions.append([x0, y0, x1, y1])
        fids.append(int(rng.integers(0, 3)))
    regions.append([0, 0, 53, 37])  # whole frame
    fids.append(2)
    got = crop_resize_area(table, torch.tensor(fids), torch.tensor(regions), 24)
    for k, ((x0, y0, x1, y1), f) in enumerate(zip(regions, fids, strict=True)):
        ref = F.interpolate(img[f : f + 1, :, y0:y1, x0:x1], size=(24, 24), mode="area")[0]
        torch.testing.assert_close(got[k], ref, atol=1e-4, rtol=1e-5)


def test_resize_like_pil_matches_pillow(data_dir: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    img = _image(data_dir, "multiface")[:-1, :-3]  # odd sizes
    h, w = img.shape[:2]
    ref = np.asarray(pil.fromarray(img).resize((w // 2, h // 2))).astype(np.int16)  # the original's half size
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    got = resize_like_pil(x, h // 2, w // 2)[0].permute(1, 2, 0).numpy().astype(np.int16)
    diff = np.abs(got - ref)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01


def test_pyramid_scales(mtcnn: MTCNN) -> None:
    scales = mtcnn.pyramid_scales(360, 640)
    assert scales[0] == pytest.approx(0.6)
    assert np.allclose(np.diff(np.log(scales)), np.log(0.709))
    assert 360 * scales[-1] >= 12 > 360 * scales[-1] * 0.709


# ---------------------------------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------------------------------
def test_no_face_and_input_checks(mtcnn: MTCNN) -> None:
    frames = np.full((2, 120, 160, 3), 128, np.uint8)
    out = mtcnn.detect(frames)
    assert len(out) == 2
    for d in out:
        assert isinstance(d, FrameDetections) and len(d) == 0
        assert d.boxes.shape == (0, 4) and d.scores.shape == (0,) and d.landmarks.shape == (0, 5, 2)
    with pytest.raises(TypeError):
        mtcnn.detect(frames.astype(np.float32))
    with pytest.raises(ValueError):
        mtcnn.detect(frames[..., :2])
    assert len(mtcnn.detect(np.zeros((0, 64, 64, 3), np.uint8))) == 0
    assert len(mtcnn.detect(np.zeros((4, 4, 3), np.uint8))) == 1  # one frame, too small for the pyramid


@pytest.mark.needs_data
@pytest.mark.parametrize("name", PORTRAITS)
def test_portrait_has_one_dominant_face(mtcnn: MTCNN, data_dir: Path, name: str) -> None:
    img = _image(data_dir, name)
    h, w = img.shape[:2]
    (det,) = mtcnn.detect(img, scale=0.25)
    assert len(det) == 1
    assert det.scores[0] > 0.99
    x1, y1, x2, y2 = det.boxes[0]
    assert 0.15 * min(h, w) < x2 - x1 < min(h, w) and 0.15 * min(h, w) < y2 - y1 < 1.2 * h
    # landmarks (eyes, nose, mouth) inside the box, eyes above the mouth
    lm = det.landmarks[0]
    assert np.all((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2))
    assert lm[:2, 1].max() < lm[3:, 1].min()
    assert det.boxes.dtype == np.float32 and det.landmarks.shape == (1, 5, 2)


@pytest.mark.needs_data
def test_boxes_are_in_full_resolution(mtcnn: MTCNN, data_dir: Path) -> None:
    img = _image(data_dir, "kate_siegel")[:1600, :1120]
    half = cv2.resize(img, (560, 800), interpolation=cv2.INTER_AREA)
    (a,) = mtcnn.detect(img, scale=0.25)  # detected at 280x400, returned in 1120x1600 pixels
    (b,) = mtcnn.detect(half, scale=0.5)  # detected at 280x400, returned in 560x800 pixels
    side = a.boxes[0, 2] - a.boxes[0, 0]
    assert side > 150
    assert np.abs(a.boxes[0] - 2 * b.boxes[0]).max() < 0.05 * side
    assert np.abs(a.landmarks[0] - 2 * b.landmarks[0]).max() < 0.05 * side


@pytest.mark.needs_data
def test_multiface_sorted_by_area(mtcnn: MTCNN, data_dir: Path) -> None:
    img = _image(data_dir, "multiface")  # six people, faces ~80 px (~40 px at half resolution)
    (det,) = mtcnn.detect(img)
    assert len(det) == 6
    assert np.all(det.scores > 0.95)
    area = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
    assert np.all(np.diff(area) <= 0)
    # six distinct faces: no two boxes overlap
    for i in range(6):
        for j in range(i + 1, 6):
            bi, bj = det.boxes[i], det.boxes[j]
            assert min(bi[2], bj[2]) <= max(bi[0], bj[0]) or min(bi[3], bj[3]) <= max(bi[1], bj[1])
    # torch input (and a batch of two identical frames) gives the same result
    (det_t, det_t2) = mtcnn.detect(torch.from_numpy(np.stack([img, img])))
    np.testing.assert_allclose(det_t.boxes, det.boxes, atol=1e-3)
    np.testing.assert_allclose(det_t2.boxes, det.boxes, atol=1e-3)


@pytest.mark.needs_data
def test_batched_equals_frame_by_frame(mtcnn: MTCNN, data_dir: Path) -> None:
    frames = _frames(data_dir / "videos" / "two_people_one_fake_720p.mp4", 3)
    batched = mtcnn.detect(frames, scale=0.25)
    chunked = mtcnn.detect(frames, scale=0.25, max_batch_frames=2)
    single = [mtcnn.detect(f, scale=0.25)[0] for f in frames]
    for a, b, c in zip(batched, chunked, single, strict=True):
        assert len(a) == len(b) == len(c) == 2
        np.testing.assert_allclose(a.boxes, c.boxes, atol=1e-2)
        np.testing.assert_allclose(a.scores, c.scores, atol=1e-4)
        np.testing.assert_allclose(a.landmarks, c.landmarks, atol=1e-2)
        np.testing.assert_allclose(b.boxes, c.boxes, atol=1e-2)


@pytest.mark.needs_data
def test_two_people_clip(mtcnn: MTCNN, data_dir: Path) -> None:
    frames = _frames(data_dir / "videos" / "two_people_one_fake_720p.mp4", 4)
    dets = mtcnn.detect(frames)  # half resolution, as the original
    assert sum(len(d) == 2 for d in dets) >= 3
    for d in dets:
        if len(d) == 2:
            # side by side: one face in each half of the 1280-px frame, both large
            cx = sorted((d.boxes[:, 0] + d.boxes[:, 2]) / 2)
            assert cx[0] < 640 < cx[1]
            assert np.all(d.boxes[:, 2] - d.boxes[:, 0] > 150)


@pytest.mark.needs_data
def test_single_person_clips(mtcnn: MTCNN, data_dir: Path) -> None:
    dets = mtcnn.detect(_frames(data_dir / "videos" / "ffpp_634_real_720p.mp4", 3, span=100))
    assert [len(d) for d in dets] == [1, 1, 1]
    assert all(d.scores[0] > 0.98 for d in dets)
    centres = np.array([(d.boxes[0, :2] + d.boxes[0, 2:]) / 2 for d in dets])
    assert np.ptp(centres, axis=0).max() < 200  # the same talking head
    # portrait orientation (720x1280), one standing person whose head is in the upper half of the frame (the
    # face is hard later in the clip: tilted back, harsh light; the first two seconds are clean)
    dets = mtcnn.detect(_frames(data_dir / "videos" / "dfdc_portrait_fake_720x1280.mp4", 3, span=60))
    assert [len(d) for d in dets] == [1, 1, 1]
    for d in dets:
        cx, cy = (d.boxes[0, :2] + d.boxes[0, 2:]) / 2
        assert 250 < cx < 550 and 200 < cy < 550


@pytest.mark.needs_data
def test_street_crowd_several_faces(mtcnn: MTCNN, data_dir: Path) -> None:
    dets = mtcnn.detect(_frames(data_dir / "videos" / "street_crowd_1080p.mp4", 2, span=60))
    counts = [len(d) for d in dets]
    assert min(counts) >= 3, counts
    for d in dets:
        area = (d.boxes[:, 2] - d.boxes[:, 0]) * (d.boxes[:, 3] - d.boxes[:, 1])
        assert np.all(np.diff(area) <= 0)
        assert np.all((d.boxes[:, 0] > -20) & (d.boxes[:, 2] < 1940) & (d.boxes[:, 3] < 1100))


# ---------------------------------------------------------------------------------------------------------------
# parity with facenet-pytorch itself, where it can be imported (needs torchvision: e.g. the GPU machine)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.needs_data
def test_parity_with_facenet_pytorch(mtcnn: MTCNN, data_dir: Path) -> None:
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed: facenet_pytorch cannot be imported")
    try:
        from facenet_pytorch import MTCNN as FacenetMTCNN
    except Exception as exc:  # a broken torchvision raises all sorts of errors
        pytest.skip(f"facenet_pytorch cannot be imported: {exc}")
    ref = FacenetMTCNN(thresholds=[0.85, 0.95, 0.95], keep_all=True, select_largest=True, device="cpu")
    for name in (*PORTRAITS, "multiface"):
        img = _image(data_dir, name)
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        boxes, probs = ref.detect(img)
        (ours,) = mtcnn.detect(img, scale=1.0)
        assert len(ours) == len(boxes), name
        np.testing.assert_allclose(ours.boxes, boxes.astype(np.float32), atol=1.0)
        np.testing.assert_allclose(ours.scores, probs.astype(np.float32), atol=1e-3)


@pytest.mark.needs_cuda
@pytest.mark.needs_data
def test_cuda_matches_cpu(mtcnn: MTCNN, data_dir: Path) -> None:
    frames = _frames(data_dir / "videos" / "two_people_one_fake_720p.mp4", 4)
    gpu = MTCNN(device="cuda", weights_dir=_weights_dir())
    for a, b in zip(mtcnn.detect(frames), gpu.detect(torch.from_numpy(frames).cuda()), strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
