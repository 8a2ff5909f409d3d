"""Batched dlib-geometry face chips: the similarity fit, dlib's chip geometry, and identities from MTCNN points.

Two questions, kept apart:

1. Does :func:`extract_chips` cut the chips dlib cuts? Given dlib's own 5 landmarks and dlib's template, the
   chips equal ``dlib.get_face_chip`` to 1 grey level (truncation) at every pyramid level, on synthetic frames
   and on the shared footage.
2. Do chips cut from MTCNN's five landmarks (:data:`MTCNN_TEMPLATE`) keep identities? Measured on the shared
   footage (38 faces of 40 px and more, 703 pairs), against dlib's full pipeline (shape predictor + dlib's
   chips + dlib's descriptors): the descriptor of a face moves by median 0.16, at most 0.50 (dlib's own
   descriptor moves by 0.10 on average when its landmarks get 1 % noise of the face size); same/different
   decisions at 0.6 agree on 695 of 703 pairs, and the 8 others are pairs dlib itself puts within 0.025 of
   the threshold (0.595-0.624). Pairs of known identity: every known-same pair stays the same person (largest
   distance 0.567, dlib 0.580); 7 of 590 known-different pairs fall below 0.6 (dlib: 1), all at 0.546-0.596,
   six of them with a street-crowd face of 49-96 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mintime.faces.align import (
    DLIB_5PT_TEMPLATE,
    MTCNN_TEMPLATE,
    align_faces,
    chip_transforms,
    extract_chips,
    pyramid_levels,
    similarity_transforms,
)

THRESHOLD = 0.6


def _rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _synthetic_frame(h: int = 720, w: int = 1280, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8: smooth stripes plus noise (every pixel differs from its neighbours)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    chans = [
        127 + 60 * np.sin(xx / 7.0 + c) + 40 * np.cos(yy / 11.0 - c) + rng.normal(0, 10, (h, w))
        for c in range(3)
    ]
    return np.stack(chans, -1).clip(0, 255).astype(np.uint8)


def _face_points(cx: float, cy: float, side: float, angle: float) -> np.ndarray:
    """dlib 5-point landmarks of a synthetic face (integer pixels, like dlib's shape predictor output)."""
    pts = (DLIB_5PT_TEMPLATE - 0.5) * side @ _rotation(angle).T + [cx, cy]
    return np.round(pts).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------------------------
def test_similarity_fit_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = torch.from_numpy(rng.uniform(-1, 1, (5, 2)))
    mats = []
    for scale, angle, t in ((2.0, 0.3, (5.0, -2.0)), (0.5, -1.2, (100.0, 40.0)), (1.0, 0.0, (0.0, 0.0))):
        mats.append(np.c_[scale * _rotation(angle), t])
    mats = np.stack(mats)
    dst = torch.einsum("nij,kj->nki", torch.from_numpy(mats[:, :, :2]), src) + torch.from_numpy(
        mats[:, None, :, 2]
    )
    fit = similarity_transforms(src, dst)
    assert fit.shape == (3, 2, 3) and fit.dtype == torch.float64
    assert np.allclose(fit.numpy(), mats, atol=1e-9)
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transforms(torch.zeros(5, 2, dtype=torch.float64), dst)
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        similarity_transforms(src, dst[:, :3])


def test_chip_transform_follows_dlib_geometry() -> None:
    # landmarks exactly on dlib's template, scaled by 2 and shifted: the chip maps onto that face square
    size, padding, scale = 150, 0.25, 2.0
    chip_pts = (padding + DLIB_5PT_TEMPLATE) / (1 + 2 * padding) * size
    landmarks = chip_pts * scale + [30.0, 40.0]
    m = chip_transforms(landmarks[None], DLIB_5PT_TEMPLATE, size=size, padding=padding)[0].numpy()
    k = (size * scale - 1) / (size - 1)  # dlib's centered_drect: corner pixels map to the rectangle's corners
    assert np.allclose(m[:, :2], k * np.eye(2), atol=1e-9)
    centre = np.array([size / 2 * scale + 30.0, size / 2 * scale + 40.0])
    assert np.allclose(m @ [(size - 1) / 2, (size - 1) / 2, 1.0], centre, atol=1e-9)
    with pytest.raises(ValueError, match="template"):
        chip_transforms(landmarks[None, :4], DLIB_5PT_TEMPLATE)


def test_pyramid_levels_follow_dlibs_rule() -> None:
    # halve the extraction rectangle (side (size - 1) k + 1) while the halved one is still wider than the chip
    ks = torch.tensor([0.5, 1.0, 2.0, 2.1, 4.0, 4.2, 9.0], dtype=torch.float64)
    m = torch.zeros(len(ks), 2, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 1, 1] = ks, ks
    assert pyramid_levels(m, 150).tolist() == [0, 0, 0, 1, 1, 2, 3]


def test_bad_inputs_raise() -> None:
    frames = torch.zeros(2, 64, 64, 3, dtype=torch.uint8)
    m = torch.eye(2, 3, dtype=torch.float64)[None]
    with pytest.raises(ValueError, match="out of range"):
        extract_chips(frames, [2], m, size=8)
    with pytest.raises(ValueError, match="transforms"):
        extract_chips(frames, [0, 1], m, size=8)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        extract_chips(frames[0, 0], [0], m, size=8)
    assert extract_chips(frames, [], m[:0], size=8).shape == (0, 8, 8, 3)


# ---------------------------------------------------------------------------------------------------------------
# chips against dlib.get_face_chip
# ---------------------------------------------------------------------------------------------------------------
def _dlib_chip(dlib, frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    det = dlib.full_object_detection(
        dlib.rectangle(0, 0, 1, 1), [dlib.point(int(x), int(y)) for x, y in points]
    )
    return dlib.get_face_chip(frame, det, size=150, padding=0.25)


def test_chips_equal_dlibs_on_synthetic_faces() -> None:
    dlib = pytest.importorskip("dlib")
    frame = _synthetic_frame()
    # pyramid levels 0, 1, 2 (partly outside the frame), 0 (at the corner), 3
    faces = [
        (300, 300, 80, 0.1),
        (700, 360, 250, -0.2),
        (1000, 300, 500, 0.05),
        (60, 650, 120, 0.3),
        (640, 400, 1100, 0),
    ]
    points = np.stack([_face_points(*f) for f in faces])
    levels = pyramid_levels(chip_transforms(points, DLIB_5PT_TEMPLATE)).tolist()
    assert levels == [0, 1, 2, 0, 3]
    ours = align_faces(frame, [0] * len(faces), points, template=DLIB_5PT_TEMPLATE).numpy()
    assert ours.dtype == np.uint8 and ours.shape == (5, 150, 150, 3)
    for k, pts in enumerate(points):
        ref = _dlib_chip(dlib, frame, pts)
        assert np.abs(ours[k].astype(int) - ref.astype(int)).max() <= 1, f"face {k} (level {levels[k]})"
    assert (ours[2].sum(-1) == 0).mean() > 0.1  # the part outside the frame is black, as dlib's


def test_batched_equals_one_by_one_across_frames() -> None:
    frames = np.stack([_synthetic_frame(seed=s) for s in range(3)])
    faces = [
        (0, (300, 300, 80, 0.1)),
        (2, (700, 360, 250, -0.2)),
        (0, (900, 300, 400, 0.05)),
        (1, (640, 400, 120, 0)),
    ]
    fidx = [f for f, _ in faces]
    points = np.stack([_face_points(*spec) for _, spec in faces])
    together = align_faces(frames, fidx, points, template=DLIB_5PT_TEMPLATE, out_dtype=torch.float32)
    for k, (f, _) in enumerate(faces):
        alone = align_faces(
            frames[f : f + 1], [0], points[k : k + 1], template=DLIB_5PT_TEMPLATE, out_dtype=torch.float32
        )
        assert torch.allclose(together[k], alone[0], atol=1e-3)


@pytest.mark.needs_cuda
def test_cuda_equals_cpu() -> None:
    frames = np.stack([_synthetic_frame(seed=s) for s in range(2)])
    points = np.stack([_face_points(300, 300, 80, 0.1), _face_points(700, 360, 450, -0.2)])
    cpu = align_faces(
        torch.from_numpy(frames), [0, 1], points, template=DLIB_5PT_TEMPLATE, out_dtype=torch.float32
    )
    gpu = align_faces(
        torch.from_numpy(frames).cuda(), [0, 1], points, template=DLIB_5PT_TEMPLATE, out_dtype=torch.float32
    )
    assert gpu.is_cuda
    assert (gpu.cpu() - cpu).abs().max() < 0.05


# ---------------------------------------------------------------------------------------------------------------
# shared footage: dlib's landmarks → dlib's chips; MTCNN's landmarks → identities
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samples(data_dir: Path):
    pytest.importorskip("dlib")
    from tests.faces.face_samples import load_face_samples

    return load_face_samples(data_dir)


def _chips(samples, points: np.ndarray, template: np.ndarray) -> torch.Tensor:
    """Chips of all sample faces, one batched call per source frame."""
    out = torch.zeros(len(samples), 150, 150, 3, dtype=torch.uint8)
    for f in np.unique(samples.frame_of):
        sel = np.flatnonzero(samples.frame_of == f)
        out[sel] = align_faces(samples.frames[f], np.zeros(len(sel), int), points[sel], template=template)
    return out


@pytest.mark.needs_data
def test_chips_from_dlib_landmarks_equal_dlibs_on_shared_faces(samples) -> None:
    ours = _chips(samples, samples.dlib_points, DLIB_5PT_TEMPLATE).numpy().astype(int)
    diff = np.abs(ours - samples.dlib_chips.astype(int))
    assert diff.mean() < 0.05  # measured 0.0025 (dlib pads regions of several faces of a frame together)
    assert np.percentile(diff, 99.9) <= 1


@pytest.mark.needs_data
def test_mtcnn_alignment_keeps_identities(samples) -> None:
    from mintime.faces.dlib_resnet import load_dlib_resnet

    net = load_dlib_resnet()
    with torch.inference_mode():
        ref = net(torch.from_numpy(samples.dlib_chips)).numpy()  # = dlib's descriptors (test_dlib_resnet)
        ours = net(_chips(samples, samples.mtcnn_points, MTCNN_TEMPLATE)).numpy()
    moved = np.linalg.norm(ours - ref, axis=1)
    assert np.median(moved) < 0.2 and moved.max() < 0.55  # measured 0.16 and 0.50

    iu = np.triu_indices(len(samples), k=1)
    d_ref = np.linalg.norm(ref[:, None] - ref[None], axis=-1)[iu]
    d_ours = np.linalg.norm(ours[:, None] - ours[None], axis=-1)[iu]
    flips = (d_ref < THRESHOLD) != (d_ours < THRESHOLD)
    assert flips.mean() < 0.02  # measured 8 of 703
    assert np.abs(d_ref[flips] - THRESHOLD).max() < 0.03  # only pairs at dlib's own margin flip

    # known identities: one person per portrait, clip faces of one person per clip (two people side by side
    # in two_people_one_fake, told apart by side); the street crowd is unlabelled
    src = samples.source
    cx = (samples.boxes[:, 0] + samples.boxes[:, 2]) / 2
    person = np.array(
        [f"{s}:{int(c > 640)}" if s.startswith("two_people") else s for s, c in zip(src, cx, strict=True)]
    )
    person[src == "multiface"] = [f"multiface:{k}" for k in range((src == "multiface").sum())]
    labelled = ~np.char.startswith(src.astype(str), "street")
    i, j = iu
    same = labelled[i] & labelled[j] & (person[i] == person[j])
    ffpp = {"ffpp_634_real_720p", "ffpp_634_660_faceswap_fake_720p"}  # same footage, swapped face: left out
    swap = np.array([{a, b} == ffpp for a, b in zip(src[i], src[j], strict=True)])
    different = ((src[i] != src[j]) & ~swap) | (labelled[i] & labelled[j] & (person[i] != person[j]))
    assert same.sum() >= 10 and different.sum() >= 500
    assert (d_ours[same] < THRESHOLD).all()  # no known-same pair split (dlib: none either)
    assert (d_ours[different] < THRESHOLD).sum() <= 10  # measured 7 (dlib: 1)
