"""The annotated video: per-identity colours, labels that show scores (not percentages) scaled to the frame, a
headline readable on a bright scene, every frame written, the path returned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from mintime.annotate import (  # noqa: E402
    PALETTE,
    draw_frame,
    headline_text,
    identity_colour,
    label_text,
    text_scale,
    write_annotated_video,
)

W, H, N = 640, 360, 12


def _white_clip(path: Path) -> Path:
    """A bright (pure white) H.264 clip of N frames: the worst case for white headline text."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for _ in range(N):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 255, np.uint8), format="rgb24")
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def _result() -> dict:
    def faces(x):
        return [{"frame": f, "box": [x, 120, x + 100, 240]} for f in range(0, N, 3)]

    return {
        "fake_probability": 0.9412,
        "label": "fake",
        "clip": {"sampled_frames": list(range(0, N, 3))},
        "identities": [
            {"id": 0, "kept": True, "fake_score": 0.731, "attention": 0.62, "faces": faces(60)},
            {"id": 1, "kept": True, "fake_score": 0.21, "attention": 0.38, "faces": faces(420)},
        ],
    }


def test_labels_show_scores_not_percentages():
    ident = {"id": 0, "fake_score": 0.731, "attention": 0.62}
    assert label_text(ident) == "id 0: fake score 0.73, attention 0.62"
    assert label_text({"id": 3, "fake_score": None}) == "id 3: not scored"
    assert "%" not in label_text(ident) + headline_text(_result())
    assert headline_text(_result()) == "FAKE: P(fake) = 0.941"
    assert headline_text({"fake_probability": None}) == "no face found"


def test_colours_per_identity_and_text_scaled_to_the_frame():
    assert identity_colour(0) != identity_colour(1) and identity_colour(0) == identity_colour(len(PALETTE))
    assert text_scale(1080) == pytest.approx(0.9) and text_scale(360) == pytest.approx(0.4)
    assert text_scale(2160) > text_scale(1080) > text_scale(720)


def _label_panel_colour(img: np.ndarray, x: int, y_box_top: int) -> np.ndarray:
    """Median colour of the strip just above a box (where its label panel sits)."""
    return np.median(img[max(0, y_box_top - 12) : y_box_top - 2, x + 2 : x + 40].reshape(-1, 3), axis=0)


def _dark_rows(img: np.ndarray) -> np.ndarray:
    """Rows of the top 100 where most pixels of the headline's column band are dark."""
    band = img[:100, 8:40].mean(axis=2) < 120
    return np.flatnonzero(band.mean(axis=1) > 0.5)


def test_draw_frame_colours_labels_by_identity_and_darkens_the_headline():
    img = np.full((H, W, 3), 255, np.uint8)
    res = _result()
    boxes = [(np.array(i["faces"][0]["box"], np.float32), i) for i in res["identities"]]
    draw_frame(img, boxes, headline_text(res), notes=["demo weights: synthetic swaps only"])
    np.testing.assert_allclose(_label_panel_colour(img, 60, 120), PALETTE[0], atol=2)
    np.testing.assert_allclose(_label_panel_colour(img, 420, 120), PALETTE[1], atol=2)
    # the headline and the note sit on a dark panel: white text is readable on a white scene
    rows = _dark_rows(img)
    assert rows[0] < 10 and len(rows) >= 30 and np.diff(rows).max() <= 6, (
        rows
    )  # one block, text strokes aside
    headline_only = np.full((H, W, 3), 255, np.uint8)
    draw_frame(headline_only, [], "FAKE: P(fake) = 0.941")
    assert _dark_rows(headline_only)[-1] + 10 < rows[-1], "the note adds a panel line under the headline"


def test_write_annotated_video_every_frame_and_returns_path(tmp_path):
    src = _white_clip(tmp_path / "white.mp4")
    target = tmp_path / "out" / "annotated.mp4"
    got = write_annotated_video(src, _result(), target, notes=["a note"])
    assert got == target and target.is_file()
    assert not list(target.parent.glob(".*.part"))
    with av.open(str(target)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    for t in (0, 4, 10):  # sampled, interpolated, held one frame past the last sample (9)
        c0 = _label_panel_colour(frames[t], 60, 120).astype(float)
        c1 = _label_panel_colour(frames[t], 420, 120).astype(float)
        assert np.abs(c0 - PALETTE[0]).max() < 40 and np.abs(c1 - PALETTE[1]).max() < 40, (t, c0, c1)
    assert len(_dark_rows(frames[5])) >= 30, "dark headline panel after encoding"


def test_result_notes_name_the_model_and_its_caveat():
    from mintime.annotate import result_notes
    from mintime.networks import DEMO_CAVEAT

    result = {
        "model": {"name": "mintime-demo-synthetic-v1", "caveat": DEMO_CAVEAT},
        "warnings": ["decoded 15 of 83 frames the container declares"],
    }
    assert result_notes(result) == [
        "model: mintime-demo-synthetic-v1",
        DEMO_CAVEAT,
        "warning: decoded 15 of 83 frames the container declares",
    ]
    assert result_notes({"model": {"name": "x", "caveat": None}}) == ["model: x"]
    assert result_notes({}) == []


def _ident(i: int, score: float = 0.5) -> dict:
    return {"id": i, "fake_score": score, "attention": 0.5}


def test_the_caveat_wraps_inside_a_portrait_frame():
    from mintime.annotate import frame_layout
    from mintime.networks import DEMO_CAVEAT

    h, w = 1280, 720  # a 720-px portrait frame (dfdc_portrait)
    notes = [f"model: {'mintime-demo-synthetic-v1'}", DEMO_CAVEAT]
    banner, _ = frame_layout((h, w), [], "PRISTINE: P(fake) = 0.006", notes)
    assert all(0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h for _, _, (x0, y0, x1, y1) in banner)
    assert len(banner) > 3, "the caveat is cut into lines"
    assert " ".join(text for text, _, _ in banner[2:]) == DEMO_CAVEAT, "no word is lost"
    assert text_scale(h, w) < text_scale(h)


def test_labels_keep_clear_of_the_banner_and_of_each_other():
    from mintime.annotate import frame_layout
    from mintime.networks import DEMO_CAVEAT

    def overlap(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    notes = ["model: mintime-demo-synthetic-v1", DEMO_CAVEAT]
    two = [  # two people near the top of a 720p frame, under the banner (two_people_one_fake_720p)
        (np.array([40, 60, 240, 300], np.float32), _ident(0)),
        (np.array([700, 70, 900, 310], np.float32), _ident(1)),
    ]
    crowd = [  # eight faces side by side and stacked (street_crowd)
        (
            np.array([300 + 70 * (i % 4), 200 + 30 * (i // 4), 360 + 70 * (i % 4), 260 + 30 * (i // 4)]),
            _ident(i),
        )
        for i in range(8)
    ]
    for boxes in (two, crowd):
        banner, labels = frame_layout((720, 1280), boxes, "FAKE: P(fake) = 0.941", notes)
        assert [text for text, _, _ in labels] == [label_text(ident) for _, ident in boxes]
        rects = [rect for _, _, rect in labels]
        for i, rect in enumerate(rects):
            assert 0 <= rect[0] and rect[2] <= 1280 and 0 <= rect[1] and rect[3] <= 720
            assert not any(overlap(rect, b) for _, _, b in banner), ("label under the banner", rect)
            assert not any(overlap(rect, other) for other in rects[i + 1 :]), ("labels overlap", rect)
