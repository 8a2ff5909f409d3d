"""The synthetic benchmark: tracks, recipes, split hygiene, rendered videos, layout and labels (no footage)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from training.layout import read_boxes_json, scan_video_folder
from training.split import read_list
from training.synth import (
    VIDEO_SPLIT_RANGES,
    ClipSpec,
    SynthConfig,
    build_tracks,
    generate,
    make_specs,
    source_from_arrays,
)

W, H = 320, 240


def _face_video(n: int, centres: list[tuple[float, float]], seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Frames with drawn 'faces' (skin ellipse, eyes, mouth) drifting slowly; their boxes as tracks."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(30, 90, size=3)
    frames = np.zeros((n, H, W, 3), np.uint8)
    tracks = [np.zeros((n, 4), np.float32) for _ in centres]
    for t in range(n):
        f = np.empty((H, W, 3), np.uint8)
        f[:] = bg
        for i, (cx, cy) in enumerate(centres):
            x, y = cx + 0.5 * t, cy + 0.2 * t
            skin = (200 - 40 * i, 160 + 10 * i, 130)
            cv2.ellipse(f, (int(x), int(y)), (22, 28), 0, 0, 360, skin, -1)
            cv2.circle(f, (int(x - 8), int(y - 6)), 3, (20, 20, 20), -1)
            cv2.circle(f, (int(x + 8), int(y - 6)), 3, (20, 20, 20), -1)
            cv2.line(f, (int(x - 8), int(y + 12)), (int(x + 8), int(y + 12)), (120, 40, 40), 2)
            tracks[i][t] = [x - 22, y - 28, x + 22, y + 28]
        frames[t] = f
    return frames, tracks


@pytest.fixture
def sources():
    a = source_from_arrays("solo", *_face_video(50, [(150, 110)], 0), fps=25)
    b = source_from_arrays("duo", *_face_video(50, [(90, 110), (220, 120)], 1), fps=25)
    img_frames, img_tracks = _face_video(1, [(160, 120)], 2)
    c = source_from_arrays("still", img_frames, img_tracks, split="test")
    return [a, b, c]


def _cfg(tmp_path, **kw) -> SynthConfig:
    base = dict(
        out=str(tmp_path / "bench"),
        singles={"train": 2, "val": 1, "test": 1},
        pairs={"train": 2, "val": 1, "test": 2},
        clip_frames=8,
        height=120,
        layout_frames=6,
        both_fake_fraction=1.0,
        seed=3,
    )
    base.update(kw)
    return SynthConfig(**base)


def test_build_tracks_links_fills_and_drops():
    n = 30
    dets = {}
    for f in range(0, n, 3):
        a = np.array([10 + f, 20, 60 + f, 80], np.float32)
        b = np.array([200, 30 + f, 260, 100 + f], np.float32)
        boxes = [a, b] if f != 9 else [b]  # a missed once
        if f == 12:
            boxes.append(np.array([150, 150, 160, 160], np.float32))  # a one-off tiny false detection
        dets[f] = np.stack(boxes)
    tracks = build_tracks(dets, n, smooth=1)
    assert len(tracks) == 2 and all(t.shape == (n, 4) for t in tracks)
    left, right = tracks
    assert left[0, 0] < right[0, 0]
    np.testing.assert_allclose(left[9], [19, 20, 69, 80], atol=1e-4)  # interpolated over the miss
    np.testing.assert_allclose(left[10], [20, 20, 70, 80], atol=1e-4)  # between detections 9 and 12
    np.testing.assert_allclose(right[29], right[27], atol=1e-4)  # held after the last detection


def test_specs_respect_split_ranges(tmp_path, sources):
    specs = make_specs(sources, _cfg(tmp_path))
    by_name = {s.name: s for s in sources}
    assert {s.split for s in specs} == {"train", "val", "test"}
    for spec in specs:
        assert ClipSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).to_dict() == spec.to_dict()
        starts = [(p.source, p.start) for p in spec.panels] + [
            (sw.donor_source, sw.donor_start) for sw in spec.swaps.values()
        ]
        for name, start in starts:
            src = by_name[name]
            assert spec.split in src.units, (spec.name, name)  # a source only feeds the splits it belongs to
            a, b = src.units[spec.split]
            if src.kind == "video":
                assert a <= start and start + spec.num_frames <= b, (spec.name, name, start, (a, b))
        for i, sw in spec.swaps.items():
            ident = spec.identities()[i]
            assert sw.donor_source != spec.panels[ident[0]].source  # never donate to oneself
        n_ids = len(spec.identities())
        assert spec.method == (0 if not spec.swaps else 1 if n_ids == 1 else 2 if len(spec.swaps) == 1 else 3)
    assert VIDEO_SPLIT_RANGES["train"][1] < VIDEO_SPLIT_RANGES["val"][0] < VIDEO_SPLIT_RANGES["test"][0]


def test_generate_writes_videos_layout_and_lists(tmp_path, sources):
    from mintime.video import decode_sampled

    cfg = _cfg(tmp_path)
    summary = generate(cfg, sources=sources, progress=False)
    out = tmp_path / "bench"
    assert not summary["failed"] and summary["done"] == sum(c["total"] for c in summary["counts"].values())
    for split in ("train", "val", "test"):
        rows = read_list(out / "lists" / f"{split}.csv")
        assert rows and all(r.path.startswith(f"{split}/") for r in rows)
        for r in rows:
            meta = read_boxes_json(out / "faces" / r.path)
            labels = meta["labels"]
            assert labels["video"] == r.label and labels["method"] == r.method
            ids = labels["identities"]
            assert sum(ids) == {0: 0, 1: 1, 2: 1, 3: 2}[r.method]
            assert len(ids) == {0: len(ids), 1: 1, 2: 2, 3: 2}[r.method] and len(ids) in (1, 2)
            vf = scan_video_folder(out / "faces" / r.path)
            assert len(vf.identities) == len(ids) and all(len(i) == cfg.layout_frames for i in vf.identities)
            assert vf.labels == ids
            clip = decode_sampled(out / "videos" / r.path, 100)
            assert len(clip.frames) == 8 and clip.height == 120
    # real and fake versions of one base clip differ in the swapped face only
    spec = next(s for s in make_specs(sources, cfg) if s.method == 2)
    real = decode_sampled(out / "videos" / spec.split / f"{spec.base}_real.mp4", 8).frames.astype(np.float32)
    fake = decode_sampled(out / "videos" / spec.rel, 8).frames.astype(np.float32)
    meta = read_boxes_json(out / "faces" / spec.rel)
    swapped = next(
        i for i, lab in zip(meta["identities"], meta["labels"]["identities"], strict=True) if lab == 1
    )
    kept = next(
        i for i, lab in zip(meta["identities"], meta["labels"]["identities"], strict=True) if lab == 0
    )
    f0 = swapped["faces"][0]["frame"]
    diff = np.abs(real[f0] - fake[f0]).mean(axis=2)

    def region(face):
        x0, y0, x1, y1 = (int(v) for v in face["box"])
        return diff[max(y0, 0) : y1, max(x0, 0) : x1].mean()

    assert region(swapped["faces"][0]) > 8.0  # the pasted face
    assert region(kept["faces"][0]) < 3.0  # the other person is untouched (up to codec noise)
    # a second run does no work
    again = generate(cfg, sources=sources, progress=False)
    assert again["done"] == 0 and again["skipped"] == summary["done"]
