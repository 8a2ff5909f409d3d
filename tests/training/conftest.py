"""Fixtures for the training tests: a tiny face-crop layout of generated PNGs (no footage needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from training.layout import face_file_name, write_boxes_json
from training.split import ListRow, write_list

FRAME_W, FRAME_H = 320, 240


def write_fake_video_folder(
    root: Path,
    rel: str,
    *,
    label: int,
    faces_per_identity: list[int],
    crop_sides: list[int],
    seed: int,
    frame_step: int = 5,
) -> Path:
    """One video folder of the layout with generated crops.

    Identity i gets ``faces_per_identity[i]`` crops of side ``crop_sides[i]`` at frames 0, step, 2*step, ...
    Pristine crops are smooth gradients; fake crops carry a bright square in the centre, so the label is
    learnable from a single face even through a random frozen backbone.
    """
    rng = np.random.default_rng(seed)
    folder = root / rel
    folder.mkdir(parents=True)
    identities = []
    for i, (n, side) in enumerate(zip(faces_per_identity, crop_sides, strict=True)):
        (folder / str(i)).mkdir()
        entries = []
        base = rng.integers(90, 150, size=3)
        for j in range(n):
            frame = j * frame_step
            yy, xx = np.mgrid[0:side, 0:side]
            img = np.zeros((side, side, 3), np.float32)
            img[..., 0] = base[0] + 30 * np.sin(xx / 9.0 + j)
            img[..., 1] = base[1] + 30 * np.cos(yy / 7.0)
            img[..., 2] = base[2]
            if label == 1:
                q = side // 4
                img[q:-q, q:-q] += 100.0
            img += rng.normal(0, 3, img.shape)
            name = face_file_name(frame, i)
            cv2.imwrite(str(folder / str(i) / name), np.clip(img, 0, 255).astype(np.uint8))
            x0 = 10 + 150 * i
            entries.append(
                {
                    "frame": frame,
                    "face": i,
                    "box": [x0, 20, x0 + side // 2, 20 + side // 2],
                    "crop": [x0, 20, x0 + side, 20 + side],
                    "file": f"{i}/{name}",
                }
            )
        identities.append({"id": i, "faces": entries})
    n_frames = max(faces_per_identity) * frame_step
    write_boxes_json(
        folder,
        {
            "status": "ok",
            "video": {
                "fps": 25.0,
                "width": FRAME_W,
                "height": FRAME_H,
                "total_frames": n_frames,
                "sampled_frames": list(range(0, n_frames, frame_step)),
            },
            "detections": {},
            "identities": identities,
        },
    )
    return folder


def make_layout(root: Path, n_per_class: int = 4, *, seed: int = 0) -> dict[str, Path]:
    """A tiny dataset: ``n_per_class`` real and fake videos per split, half of them with two identities.

    Returns:
        {"data": layout root, "train": list, "val": list}.
    """
    data = root / "faces"
    rows: dict[str, list[ListRow]] = {"train": [], "val": []}
    k = 0
    for split in rows:
        for label in (0, 1):
            for v in range(n_per_class):
                two = v % 2 == 1
                rel = f"{split}/v{k:03d}.mp4"
                write_fake_video_folder(
                    data,
                    rel,
                    label=label,
                    faces_per_identity=[6, 4] if two else [10],
                    crop_sides=[64, 40] if two else [56],
                    seed=seed + k,
                )
                rows[split].append(ListRow(rel, label, (2 if two else 1) if label else 0))
                k += 1
    out = {"data": data}
    for split, r in rows.items():
        out[split] = write_list(r, root / "lists" / f"{split}.csv")
    return out


@pytest.fixture
def tiny_layout(tmp_path: Path) -> dict[str, Path]:
    return make_layout(tmp_path)
