"""Dataset items over a tiny generated layout: shapes, dtypes, masks, sampling, augmentation, feature cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.augment import apply_params, augment_faces, sample_params  # noqa: E402
from training.dataset import FaceVideoDataset, class_counts, load_rows  # noqa: E402
from training.features import FeatureCache  # noqa: E402
from training.layout import scan_video_folder, write_boxes_json  # noqa: E402
from training.split import ListRow  # noqa: E402

from .conftest import write_fake_video_folder  # noqa: E402


def _one(tmp_path: Path, faces: list[int], sides: list[int], **kw) -> FaceVideoDataset:
    write_fake_video_folder(tmp_path, "v.mp4", label=1, faces_per_identity=faces, crop_sides=sides, seed=1)
    return FaceVideoDataset([ListRow("v.mp4", 1, 2)], tmp_path, **kw)


def test_item_shapes_and_dtypes(tiny_layout):
    rows = load_rows(tiny_layout["train"], tiny_layout["data"])
    assert len(rows) == 8 and class_counts(rows) == (4, 4)
    ds = FaceVideoDataset(rows, tiny_layout["data"], num_slots=8)
    item = ds[0]
    assert item["faces"].shape == (8, 3, 224, 224) and item["faces"].dtype == torch.float32
    assert item["mask"].shape == (8,) and item["mask"].dtype == torch.bool
    assert item["identities_mask"].shape == (8, 8) and item["identities_mask"].dtype == torch.bool
    assert item["size_ids"].shape == (8,) and item["size_ids"].dtype == torch.int64
    assert item["positions"].shape == (1 + 8 * 49,) and item["positions"].dtype == torch.int64
    assert item["label"].dtype == torch.float32 and item["label"].item() == 0.0
    assert 0.0 <= float(item["faces"].min()) and float(item["faces"].max()) <= 255.0
    # one identity, 10 faces in 8 slots: no dummy, one identity block, 56x56 crop in 320x240 = 4 % -> size id 1
    assert bool(item["mask"].all()) and bool(item["identities_mask"].all())
    assert item["size_ids"].tolist() == [1] * 8
    assert int(item["num_identities"]) == 1


def test_two_identities_dummies_and_masks(tmp_path):
    # counts [12, 3] -> slots [12, 4]: identity 1 has one dummy slot at the end of its block
    ds = _one(tmp_path, [12, 3], [80, 40])
    item = ds[0]
    plan = ds.plan(0)
    assert plan.slots_per_identity == [12, 4]
    dummy = plan.is_dummy
    assert dummy.tolist() == [False] * 15 + [True]
    assert item["mask"].tolist() == (~dummy).tolist()
    assert float(item["faces"][15].abs().sum()) == 0.0 and float(item["faces"][14].abs().sum()) > 0
    assert int(item["size_ids"][15]) == 0 and int(item["size_ids"][0]) == 2  # 80*80 / 76800 = 8 % -> id 2
    expected = np.zeros((16, 16), bool)
    expected[:12, :12] = True
    expected[12:, 12:] = True
    assert np.array_equal(item["identities_mask"].numpy(), expected)
    assert int(item["num_identities"]) == 2
    all_true = _one(tmp_path / "b", [12, 3], [80, 40], mask_regime="all_true")[0]
    assert bool(all_true["mask"].all())


def test_size_ids_follow_crop_area(tmp_path):
    ds = _one(tmp_path, [16], [160])  # 160*160 / (320*240) = 33 % -> bucket ceil(33/5) = 7
    assert ds[0]["size_ids"].tolist() == [7] * 16


def test_odd_even_alternation(tmp_path):
    write_fake_video_folder(tmp_path, "v.mp4", label=0, faces_per_identity=[20], crop_sides=[56], seed=3)
    ds = FaceVideoDataset([ListRow("v.mp4", 0, 0)] * 2, tmp_path, sampling="alternate")
    even, odd = ds.plan(0), ds.plan(1)
    # L=20, k=16: even (index 0) = round(linspace(1, 19, 16)), odd = round(linspace(0, 18, 16)); frames are 5*i
    assert even.frame_indices.tolist() == (5 * np.round(np.linspace(1, 19, 16))).astype(int).tolist()
    assert odd.frame_indices.tolist() == (5 * np.round(np.linspace(0, 18, 16))).astype(int).tolist()
    fixed = FaceVideoDataset([ListRow("v.mp4", 0, 0)] * 2, tmp_path, sampling="odd")
    assert fixed.plan(0).frame_indices.tolist() == odd.frame_indices.tolist()


def test_same_augmentation_for_every_face_of_a_video(tmp_path):
    # a video whose 20 crops are the same picture: after augmentation they must still be identical
    folder = tmp_path / "same.mp4"
    (folder / "0").mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(60, 60, 3), dtype=np.uint8)
    for j in range(20):
        cv2.imwrite(str(folder / "0" / f"{5 * j}_0.png"), img)
    write_boxes_json(
        folder, {"status": "ok", "video": {"fps": 25, "width": 320, "height": 240}, "identities": []}
    )
    plain = FaceVideoDataset([ListRow("same.mp4", 0, 0)], tmp_path)[0]["faces"]
    ds = FaceVideoDataset([ListRow("same.mp4", 0, 0)], tmp_path, augmentation="max", seed=5)
    changed = 0
    for epoch in range(6):
        ds.set_epoch(epoch)
        faces = ds[0]["faces"]
        assert all(torch.equal(faces[0], faces[s]) for s in range(1, 16)), f"epoch {epoch}: faces differ"
        changed += int(not torch.equal(faces[0], plain[0]))
    assert changed >= 3  # the draw does change the pixels in most epochs


def test_augment_faces_skips_dummies_and_shares_params():
    rng = np.random.default_rng(1)
    face = np.random.default_rng(2).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    other = np.random.default_rng(3).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    out, params = augment_faces([face, None, other], rng, "max")
    assert out[1] is None
    assert np.array_equal(out[0], apply_params(face, params))
    assert np.array_equal(out[2], apply_params(other, params))
    p = sample_params(np.random.default_rng(0), "none")
    assert np.array_equal(apply_params(face, p), face)


def test_feature_cache_matches_backbone(tiny_layout, tmp_path):
    from training.modeling import TinyBackbone

    torch.manual_seed(0)
    bb = TinyBackbone().eval()
    rows = load_rows(tiny_layout["train"], tiny_layout["data"])[:3]
    cache = FeatureCache(tmp_path / "cache", "tiny")
    videos = [(r.path, tiny_layout["data"] / r.path) for r in rows]
    assert cache.build(videos, bb, progress=False) == 3
    assert cache.build(videos, bb, progress=False) == 0  # already cached
    plain = FaceVideoDataset(rows, tiny_layout["data"], num_slots=8)
    cached = FaceVideoDataset(rows, tiny_layout["data"], num_slots=8, features=cache)
    for i in range(3):
        a, b = plain[i], cached[i]
        assert b["features"].shape == (8, 64, 7, 7) and "faces" not in b
        with torch.no_grad():
            ref = bb(a["faces"])
        torch.testing.assert_close(b["features"], ref, atol=2e-2, rtol=1e-2)
        assert torch.equal(a["mask"], b["mask"])
    assert len(scan_video_folder(tiny_layout["data"] / rows[0].path).files()) == 10
