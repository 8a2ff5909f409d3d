"""``mintime preprocess``: layout, atomic per-video folders, resumability (a second run does nothing)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from mintime import contract
from mintime.faces.crops import square_crop_box
from tests.helpers.media import make_clip
from training import preprocess as pp
from training.layout import parse_face_file_name, png_size, read_boxes_json, scan_video_folder


class _Det:
    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.scores = np.ones(len(self.boxes), np.float32)


class _StubAnalyzer:
    """Stands in for the MTCNN + embedder face stage: two fixed 'faces' per frame, no face for 64 px wide clips."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.calls = 0

    def __call__(self, clip):
        from mintime.faces.stage import Face, Identity

        self.calls += 1
        big, small = [10, 8, 50, 56], [70, 20, 90, 44]
        if clip.width == 64:  # the 'no face' clips are 64 px wide
            dets = [_Det([]) for _ in clip.indices]
            return SimpleNamespace(
                status=contract.STATUS_NO_FACE, reason="none", detections=dets, identities=[]
            )
        dets = [_Det([big, small]) for _ in clip.indices]
        idents = [
            Identity(
                id=k,
                faces=tuple(
                    Face(position=t, frame=int(f), index=k, box=np.asarray(box, np.float32), score=1.0)
                    for t, f in enumerate(clip.indices)
                ),
                rank=k,
                slots=(),
            )
            for k, box in enumerate((big, small))
        ]
        return SimpleNamespace(status=contract.STATUS_OK, reason=None, detections=dets, identities=idents)


@pytest.fixture
def videos(tmp_path):
    src = tmp_path / "videos"
    (src / "sub").mkdir(parents=True)
    make_clip(src / "a.mp4", frames=12, size=(96, 64))
    make_clip(src / "sub" / "b.mp4", frames=10, size=(96, 64))
    make_clip(src / "empty.mp4", frames=6, size=(64, 48))
    return src


@pytest.fixture
def stub(monkeypatch):
    made = []

    def factory(cfg):
        made.append(_StubAnalyzer(cfg))
        return made[-1]

    monkeypatch.setattr(pp, "make_face_stage", factory)
    return made


def test_layout_and_second_run_does_nothing(videos, tmp_path, stub):
    from mintime.config import PipelineConfig

    out = tmp_path / "faces"
    cfg = PipelineConfig(num_frames=4)
    s1 = pp.preprocess([videos], out, cfg=cfg, progress=False)
    assert (s1.total, s1.processed, s1.skipped) == (3, 3, 0) and not s1.failed
    assert s1.no_face == ["empty.mp4"]
    assert s1.faces_written == 2 * 4 * 2  # two videos x 4 sampled frames x 2 faces
    folder = out / "sub" / "b.mp4"
    vf = scan_video_folder(folder)
    assert [len(i) for i in vf.identities] == [4, 4] and vf.frame_size == (96, 64)
    names = sorted(os.listdir(folder / "1"))
    assert all(parse_face_file_name(n) is not None and n.endswith("_1.png") for n in names)  # face index 1
    meta = read_boxes_json(folder)
    assert meta["status"] == "ok" and meta["video"]["sampled_frames"] == [0, 3, 6, 9]
    crop = meta["identities"][0]["faces"][0]["crop"]
    assert crop == list(
        square_crop_box([10, 8, 50, 56], 96, 64)
    )  # the square 1/3-margin crop of the pipeline
    x0, y0, x1, y1 = crop
    assert png_size(folder / "0" / "0_0.png") == (x1 - x0, y1 - y0)
    assert read_boxes_json(out / "empty.mp4")["status"] == "no_face"
    assert not any(p.name.startswith(".tmp-") for p in out.rglob("*"))

    calls = sum(a.calls for a in stub)
    s2 = pp.preprocess([videos], out, cfg=cfg, progress=False)
    assert (s2.processed, s2.skipped, s2.faces_written) == (0, 3, 0)
    assert s2.no_face == ["empty.mp4"]  # still reported from the folder's boxes.json
    assert sum(a.calls for a in stub) == calls  # no video was analysed again


def test_crash_leaves_no_partial_folder(videos, tmp_path, stub, monkeypatch):
    from mintime.config import PipelineConfig

    out = tmp_path / "faces"
    real_write = pp.write_boxes_json

    def boom(folder, data):
        real_write(folder, data)
        raise RuntimeError("disk full")

    monkeypatch.setattr(pp, "write_boxes_json", boom)
    s = pp.preprocess([videos / "a.mp4"], out, cfg=PipelineConfig(num_frames=4), progress=False)
    assert list(s.failed) == ["a.mp4"] and "disk full" in s.failed["a.mp4"]
    assert not (out / "a.mp4").exists() and not any(p.name.startswith(".tmp-") for p in out.iterdir())
    # a folder left by a dead process is cleaned, and the video is done on the next run
    stale = out / ".tmp-a.mp4-999999"
    (stale / "0").mkdir(parents=True)
    monkeypatch.setattr(pp, "write_boxes_json", real_write)
    s = pp.preprocess([videos / "a.mp4"], out, cfg=PipelineConfig(num_frames=4), progress=False)
    assert s.processed == 1 and not stale.exists() and pp.is_done(out, "a.mp4")


@pytest.mark.needs_data
def test_real_pipeline_on_two_people(data_dir, tmp_path):
    """The real detector + embedder on the two-person clip: two identity folders, largest face first."""
    from mintime.config import PipelineConfig

    out = tmp_path / "faces"
    video = data_dir / "videos" / "two_people_one_fake_720p.mp4"
    s = pp.preprocess([video], out, cfg=PipelineConfig(num_frames=6), progress=False)
    assert s.processed == 1 and not s.failed and not s.no_face
    vf = scan_video_folder(out / video.name)
    assert len(vf.identities) == 2 and all(len(i) >= 5 for i in vf.identities)
    widths = [np.mean([f.crop_w for f in ident]) for ident in vf.identities]
    assert widths[0] >= widths[1]
    assert pp.preprocess([video], out, progress=False).skipped == 1
