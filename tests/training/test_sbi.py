"""Self-blended images: the generator, the frame bank, the training crop, composed track videos, a tiny recipe run.

Real faces come from the shared real-face set (three clips, four frames each, through the project's MTCNN and
dlib's 68-point predictor); the generator's properties are checked on them.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import DATA
from training import sbi
from training.sbi import MASK_REGIONS, camera_noise, sample_params, self_blend

REAL_FACES = DATA / "real_faces" / "arabic_news"

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory):
    from training.sbi_bank import build_bank

    if not REAL_FACES.is_dir():
        pytest.skip(f"real faces not found at {REAL_FACES}")
    src = tmp_path_factory.mktemp("real")
    for p in sorted(REAL_FACES.glob("*.mp4"))[:3]:
        (src / p.name).symlink_to(p)
    out = build_bank(src, tmp_path_factory.mktemp("bank") / "bank", frames_per_video=4, chunk_size=2)
    (out / "source.txt").write_text(str(src))
    return out


@pytest.fixture(scope="module")
def bank(bank_dir):
    from training.sbi_bank import load_bank

    return load_bank(bank_dir)


def test_bank_holds_faces_with_landmarks_inside_their_box(bank, bank_dir):
    summary = json.loads((bank_dir / "bank.json").read_text())
    assert summary["videos"] == 3 and summary["frames"] == 12 and summary["failed"] == 0
    assert len(bank) == 12 - summary["no_face"] >= 10
    assert bank.frames.shape[1:] == (256, 256, 3) and bank.frames.dtype == np.uint8
    assert bank.landmarks.shape == (len(bank), 68, 2)
    assert sorted(bank.by_video()) == [0, 1, 2]
    for box, lm in zip(bank.boxes, bank.landmarks, strict=True):
        side = box[2] - box[0]
        lo, hi = box[:2] - 0.15 * side, box[2:] + 0.15 * side
        inside = np.all((lm >= lo) & (lm <= hi), axis=1)
        assert inside.mean() >= 0.9
        assert lm[36:48, 1].mean() < lm[48:68, 1].mean()  # eyes above the mouth


def test_bank_resumes_without_redoing_chunks(bank_dir):
    from training.sbi_bank import build_bank

    before = {p.name: p.stat().st_mtime_ns for p in bank_dir.glob("chunk_*")}
    assert len(before) == 4  # two chunks of (npz, json)
    build_bank((bank_dir / "source.txt").read_text(), bank_dir, frames_per_video=4, chunk_size=2)
    after = {p.name: p.stat().st_mtime_ns for p in bank_dir.glob("chunk_*")}
    assert after == before


def _hull_mask(lm: np.ndarray, shape: tuple[int, int], grow: float) -> np.ndarray:
    hull = cv2.convexHull(lm.astype(np.float32)).reshape(-1, 2)
    c = hull.mean(0)
    hull = c + (hull - c) * (1 + grow)
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, np.round(hull).astype(np.int32), 1)
    return m.astype(bool)


def test_mask_lies_on_the_face_and_blend_changes_only_masked_pixels(bank):
    rng = np.random.default_rng(1)
    changed_inside = 0
    for i in range(len(bank)):
        frame, lm = bank.frames[i], bank.landmarks[i]
        for _ in range(3):
            p = sample_params(rng)
            fake, weight = self_blend(frame, lm, p)
            assert fake.shape == frame.shape and fake.dtype == np.uint8
            assert weight.dtype == np.float32 and 0.0 <= weight.min() and weight.max() <= p.ratio + 1e-6
            # the soft mask stays within the face (its hull grown by the largest outline push and blur)
            # (with the forehead: the brows raised by p.forehead of their distance to the nose's base)
            brows = lm[17:27] + (lm[17:27] - lm[33]) * p.forehead
            face = np.concatenate([lm, brows])
            assert not (weight > 0.05)[~_hull_mask(face, frame.shape[:2], 0.45)].any()
            # and reaches the full ratio on the nose (the face's centre)
            nose = np.round(lm[27:36]).astype(int)
            assert weight[nose[:, 1], nose[:, 0]].max() >= 0.95 * p.ratio
            # outside the mask the fake is its real (the frame with the draw's camera noise, if any)
            real = camera_noise(frame, p)
            np.testing.assert_array_equal(fake[weight == 0], real[weight == 0])
            changed_inside += int(np.abs(fake.astype(int) - real.astype(int))[weight >= 0.45].max() > 0)
    assert (
        changed_inside >= 3 * len(bank) - 2
    )  # a draw can be (almost) an identity; nearly all change the face


def test_blends_are_subtle(bank):
    """Mean colour change inside the face stays small: the network must learn the blend, not a colour seam."""
    rng = np.random.default_rng(2)
    diffs = []
    for i in range(len(bank)):
        p = sample_params(rng)
        fake, weight = self_blend(bank.frames[i], bank.landmarks[i], p)
        real = camera_noise(bank.frames[i], p)
        inside = weight >= 0.45
        diffs.append(np.abs(fake[inside].astype(float).mean(0) - real[inside].astype(float).mean(0)).max())
    assert np.median(diffs) < 10.0


def test_the_pasted_face_lacks_the_camera_noise_of_its_frame(bank):
    import dataclasses

    plain = dataclasses.replace(
        sample_params(np.random.default_rng(4)),
        channel_shift=(0.0, 0.0, 0.0),
        hue=0.0,
        saturation=1.0,
        brightness=0.0,
        contrast=1.0,
        frequency="none",
        scale=(1.0, 1.0),
        shift=(0.0, 0.0),
        ratio=1.0,
        noise=4.0,
    )
    frame, lm = bank.frames[0], bank.landmarks[0]
    fake, weight = self_blend(frame, lm, plain)
    real = camera_noise(frame, plain)
    inside, outside = weight >= 0.999, weight == 0
    diff_real = real.astype(float) - frame
    assert 3.5 < diff_real[outside].std() < 4.5  # the real (and the target) carry the noise
    np.testing.assert_array_equal(fake[inside], frame[inside])  # the pasted face is the clean frame
    assert camera_noise(frame, dataclasses.replace(plain, noise=0.0)) is frame


def test_draws_are_reproducible_from_the_seed(bank):
    frame, lm = bank.frames[0], bank.landmarks[0]
    a = sample_params(np.random.default_rng(5))
    b = sample_params(np.random.default_rng(5))
    c = sample_params(np.random.default_rng(6))
    assert a == b and a != c
    np.testing.assert_array_equal(self_blend(frame, lm, a)[0], self_blend(frame, lm, b)[0])
    assert not np.array_equal(self_blend(frame, lm, a)[0], self_blend(frame, lm, c)[0])
    assert set(MASK_REGIONS) == {"face", "inner", "lower"}


def test_bad_inputs_are_refused(bank):
    p = sample_params(np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        self_blend(bank.frames[0].astype(np.float32), bank.landmarks[0], p)
    with pytest.raises(ValueError, match="68"):
        self_blend(bank.frames[0], bank.landmarks[0][:5], p)


def test_pair_dataset_gives_real_then_its_blend_with_one_degradation(bank):
    from training.sbi_train import PairDataset, SbiConfig, sample_degradation, training_crop

    cfg = SbiConfig(seed=3)
    ds = PairDataset(bank, np.arange(len(bank)), cfg)
    item = ds[2]
    assert item.shape == (2, 3, 224, 224) and item.dtype == torch.float32
    assert 0 <= float(item.min()) and float(item.max()) <= 255
    # reproduce item 2 from its seed: real first, then the blend
    rng = np.random.default_rng([3, 0, 2])
    params = sample_params(rng)
    fake, _ = self_blend(bank.frames[2], bank.landmarks[2], params)
    deg = sample_degradation(rng, cfg.face_side)
    real_crop, side = training_crop(camera_noise(bank.frames[2], params), bank.boxes[2], deg)
    fake_crop, _ = training_crop(fake, bank.boxes[2], deg)
    np.testing.assert_array_equal(item[0].permute(1, 2, 0).numpy().astype(np.uint8), real_crop)
    np.testing.assert_array_equal(item[1].permute(1, 2, 0).numpy().astype(np.uint8), fake_crop)
    assert not torch.equal(item[0], item[1])
    assert side <= round(deg.face_side * 5 / 3) + 2  # the crop of a face scaled to deg.face_side
    ds.epoch = 1
    assert not torch.equal(ds[2], item)  # another epoch, another draw


def test_training_crop_has_the_inference_geometry(bank):
    from mintime.faces.crops import crop_face, resize_for_model
    from training.sbi_train import Degradation, training_crop

    none = Degradation(face_side=1e9, blur=0.0, jpeg=0, flip=False, jitter=(0.0, 0.0, 0.0, 0.0))
    crop, side = training_crop(bank.frames[0], bank.boxes[0], none)
    expected = resize_for_model(crop_face(bank.frames[0], bank.boxes[0]))[..., ::-1]
    np.testing.assert_array_equal(crop, expected)
    assert side == max(crop_face(bank.frames[0], bank.boxes[0]).shape[:2])


def test_composed_videos_label_and_flag_the_blended_identity():
    from training.sbi_train import Tracks, compose_video

    v, t, c = 6, 16, 8
    feats = np.zeros((v, 2, t, c, 7, 7), np.float16)
    feats[:, 1] = 1.0  # blended features are ones, real ones zeros
    feats[:, :, :, 0] += np.arange(v, dtype=np.float16)[:, None, None, None, None]
    tracks = Tracks(
        features=feats,
        sides=np.full((v, t), 100, np.int32),
        frames=np.tile(np.arange(t) * 2, (v, 1)),
        counts=np.array([16, 16, 12, 16, 9, 16], np.int32),
    )
    rng = np.random.default_rng(0)
    seen = {"one_of_two": 0, "single_fake": 0, "real": 0}
    for _ in range(200):
        inputs, label, flags = compose_video(tracks, rng)
        assert inputs["features"].shape == (16, c, 7, 7)
        mask = inputs["mask"]
        # a slot is flagged exactly when it holds blended features
        np.testing.assert_array_equal(flags, (inputs["features"][:, 1, 0, 0] == 1.0) & mask)
        assert label == float(flags.any())
        ids = inputs["identities_mask"]
        owners = {tuple(row) for row in ids[mask]}
        assert 1 <= len(owners) <= 2
        assert set(inputs["size_ids"][mask].tolist()) <= set(range(1, 21))
        assert inputs["positions"].shape == (1 + 16 * 49,)
        if len(owners) == 2 and 0 < flags.sum() < mask.sum():
            # only one identity blended: its slots are all flagged, the other's none
            for row in owners:
                slots = np.array(row) & mask
                assert flags[slots].all() or not flags[slots].any()
            seen["one_of_two"] += 1
        elif len(owners) == 1 and label:
            seen["single_fake"] += 1
        elif not label:
            seen["real"] += 1
    assert min(seen.values()) >= 20


def test_threshold_keeps_the_false_positive_rate():
    from training.sbi_train import choose_threshold

    reals = np.array([0.1, 0.2, 0.3, 0.55, 0.6, 0.7, 0.8, 0.9, 0.92, 0.95])
    t = choose_threshold(reals, 0.1)
    assert t == 0.92 and (reals > t).sum() == 1
    assert choose_threshold(reals, 0.0) == 0.95 and (reals > 0.95).sum() == 0
    assert choose_threshold(np.array([0.1, 0.2]), 0.1) == 0.5  # never below 0.5


def test_tiny_recipe_writes_a_checkpoint_that_predict_loads(bank_dir, tmp_path):
    """Frames (a few steps), tracks, temporal (one epoch), checkpoint: the whole recipe in seconds on a CPU."""
    from mintime.networks import load_networks
    from training.sbi_train import MODEL_NAME, SbiConfig, run

    cfg = SbiConfig(
        bank=str(bank_dir),
        out=str(tmp_path / "run"),
        frame_minutes=0.02,
        frame_batch_pairs=2,
        eval_every=1000,
        holdout_fraction=0.34,
        track_videos=2,
        temporal_epochs=1,
        temporal_batch=2,
        temporal={"dim": 16, "depth": 1, "heads": 2, "dim_head": 8},
    )
    summary = run(cfg, baseline=False)
    ck = tmp_path / "run" / "sbi.pt"
    assert summary["sbi"]["checkpoint"] == str(ck) and ck.is_file()
    nets = load_networks(checkpoint=ck)
    assert nets.model["name"] == MODEL_NAME and nets.kind == "mintime"
    assert "self-blended" in nets.model["trained_on"] and nets.metadata["threshold"] == 0.5
    assert nets.backbone_stock is False
    x = torch.zeros(1, 16, 3, 224, 224)
    with torch.inference_mode():
        feats = nets.backbone(x[0]).unsqueeze(0)
        logit = nets.head(
            feats,
            torch.ones(1, 16, dtype=torch.bool),
            torch.ones(1, 16, 16, dtype=torch.bool),
            torch.ones(1, 16, dtype=torch.long),
            torch.arange(1 + 16 * 49)[None],
        )
    assert torch.isfinite(logit).all()
    # resuming a finished run trains nothing again: the checkpoint file stays as it is
    stamp = ck.stat().st_mtime_ns
    assert run(cfg, baseline=False)["sbi"] == summary["sbi"]
    assert ck.stat().st_mtime_ns == stamp


def test_module_docstring_names_the_paper():
    assert "Shiohara" in (sbi.__doc__ or "")
