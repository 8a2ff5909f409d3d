"""The list tools (stratified split) and the evaluation metrics on known inputs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mintime.slots import FaceRecord, build_slots
from training.evaluate import format_report, identity_attribution, plot_roc
from training.layout import VideoFaces
from training.metrics import compute_metrics, equal_error_rate, method_metrics, report
from training.split import ListRow, read_list, split_lists, stratified_split, write_list


def _forgerynet_like(tmp_path):
    # 4 columns like ForgeryNet's training list (path, binary, 3-class, 8-class): the method is the last column
    counts = {0: 300, 1: 100, 2: 50, 7: 40, 8: 10}
    lines = []
    for method, n in counts.items():
        for i in range(n):
            lines.append(
                f"train_video_release/{method}/{i:04d}/video.mp4 {int(method > 0)} {min(method, 2)} {method}"
            )
    p = tmp_path / "train_list.txt"
    p.write_text("\n".join(lines) + "\n")
    return p, counts


def test_read_list_formats(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("# comment\na/video.mp4 1 3\n\nb/video.mp4 0\nc 1 2 5\n")
    rows = read_list(p, path_map={"a/": "train/a/"})
    assert rows == [ListRow("train/a/video.mp4", 1, 3), ListRow("b/video.mp4", 0, 0), ListRow("c", 1, 5)]
    p.write_text("only_one_column\n")
    with pytest.raises(ValueError, match="expected"):
        read_list(p)


def test_stratified_split_per_method(tmp_path):
    src, counts = _forgerynet_like(tmp_path)
    rows = read_list(src)
    train, val = stratified_split(rows, 0.1, seed=42)
    per_val = Counter(r.method for r in val)
    assert per_val == {m: round(0.1 * n) for m, n in counts.items()}  # 30, 10, 5, 4, 1
    assert len(train) + len(val) == len(rows) and not set(r.path for r in train) & set(r.path for r in val)
    # deterministic and independent of the input order
    again = stratified_split(list(reversed(rows)), 0.1, seed=42)[1]
    assert sorted(r.path for r in again) == sorted(r.path for r in val)
    other = stratified_split(rows, 0.1, seed=7)[1]
    assert sorted(r.path for r in other) != sorted(r.path for r in val)


def test_split_lists_writes_csvs_and_drops_missing(tmp_path):
    src, _ = _forgerynet_like(tmp_path)
    faces = tmp_path / "faces"
    for r in read_list(src, path_map={"train_video_release/": "train/"})[:-20]:  # the last 20 have no crops
        (faces / r.path / "0").mkdir(parents=True)
        (faces / r.path / "0" / "0_0.png").write_bytes(b"")
    test_list = write_list([ListRow("train/0/0000/video.mp4", 0, 0)], tmp_path / "val_list.txt")
    s = split_lists(
        src,
        tmp_path / "out",
        test_list=test_list,
        data_path=faces,
        path_map={"train_video_release/": "train/"},
        allow_incomplete=True,  # the one-video test list
    )
    assert s.missing == {"train": 20, "test": 0}
    assert s.warnings == [
        "test.csv would hold 1 video (1 real / 0 fake): no fake (label 1) video, fewer than 10 videos"
    ]
    train, val = read_list(tmp_path / "out" / "train.csv"), read_list(tmp_path / "out" / "val.csv")
    assert len(train) + len(val) == 480 and all(r.path.startswith("train/") for r in train + val)
    assert s.counts["val"]["total"] == len(val) and (tmp_path / "out" / "test.csv").is_file()
    # the same through `mintime split`
    from mintime.cli import main as cli_main

    rc = cli_main(
        [
            "split",
            "--train-list",
            str(src),
            "--out",
            str(tmp_path / "cli"),
            "--data-path",
            str(faces),
            "--path-map",
            "train_video_release/=train/",
            "--val-fraction",
            "0.2",
            "--seed",
            "1",
        ]
    )
    assert (
        rc == 0 and len(read_list(tmp_path / "cli" / "val.csv")) == 60 + 20 + 10 + 6
    )  # methods 8 and half of 7 lack crops


def test_eer_on_known_inputs():
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == pytest.approx(0.0)
    assert equal_error_rate([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])[0] == pytest.approx(1.0)
    # ROC points (fpr, tpr): (0,0) (0,.5) (.5,.5) (.5,1) (1,1): FNR = FPR at 0.5
    eer, thr = equal_error_rate([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert eer == pytest.approx(0.5) and thr == pytest.approx(0.6)
    # 1 error in 4 on each side: EER 0.25
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.75, 0.7, 0.8, 0.85, 0.9]
    assert equal_error_rate(y, s)[0] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        equal_error_rate([1, 1], [0.2, 0.3])


def test_compute_metrics_values():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.6, 0.3, 0.8, 0.9])
    m = compute_metrics(y, p)
    assert m["n"] == 6 and m["n_real"] == 3 and m["n_fake"] == 3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 / 3)  # precision 2/3, recall 2/3
    assert m["auc"] == pytest.approx(7 / 9)  # 7 of the 9 (fake, real) pairs ranked right
    assert 0 < m["ap"] <= 1 and m["eer"] == pytest.approx(1 / 3)
    assert m["bce"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.4, 0.3, 0.8, 0.9])))
    logits = np.log(p / (1 - p))
    assert compute_metrics(y, logits, logits=True)["auc"] == pytest.approx(m["auc"])
    one_class = compute_metrics(np.array([1, 1]), np.array([0.7, 0.2]))
    assert one_class["auc"] is None and one_class["accuracy"] == 0.5


def test_per_method_and_report(tmp_path):
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    m = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    logit = np.array([-2.0, -1.0, 1.0, -3.0, 2.0, 3.0, -0.5, 0.5])
    n_ids = np.array([1, 2, 2, 1, 1, 1, 2, 2])
    per = method_metrics(y, 1 / (1 + np.exp(-logit)), m)
    assert (
        per["0"]["accuracy"] == pytest.approx(0.75)
        and per["0"]["errors"] == 1
        and "auc_vs_real" not in per["0"]
    )
    assert per["1"]["accuracy"] == 1.0 and per["1"]["auc_vs_real"] == pytest.approx(1.0)
    assert per["2"]["accuracy"] == 0.5 and per["2"]["auc_vs_real"] == pytest.approx(6 / 8)
    rep = report(
        {"label": y, "logit": logit, "method": m, "num_identities": n_ids}, method_names={2: "one of two"}
    )
    multi = rep["multi_identity"]
    assert multi["n"] == 4 and multi["n_real"] == 2 and multi["auc"] == pytest.approx(0.5)
    assert rep["multi_identity_per_method"]["2"]["auc_vs_real"] == pytest.approx(0.5)
    text = format_report(rep)
    assert "multi-identity" in text and "one of two" in text
    png = plot_roc(tmp_path / "roc.png", {"all": (y, logit)})
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Stub:
    """A dataset stand-in: two identities per video, per-identity labels, slot plans from build_slots."""

    def __init__(self, labels):
        self.labels = labels
        big = [FaceRecord(5 * i, 80, 80) for i in range(10)]
        small = [FaceRecord(5 * i, 40, 40) for i in range(10)]
        self.vf = VideoFaces(identities=[big, small], frame_size=(320, 240))

    def scan(self, i):
        return VideoFaces(self.vf.identities, self.vf.frame_size, self.labels[i])

    def plan(self, i):
        return build_slots(self.vf.identities, frame_size=(320, 240))


def test_identity_attribution_counts_the_top_identity():
    # video 0: identity 1 manipulated, attention on slots 8..15 (identity 1) -> hit
    # video 1: identity 0 manipulated, attention on identity 1 -> miss; video 2: pristine -> not counted
    attn = np.full((3, 2, 2, 1 + 16 * 49), 1e-4, np.float32)
    attn[:, :, :, 1 + 8 * 49 :] = 3e-3
    ds = _Stub([[0, 1], [1, 0], [0, 0]])
    pred = {"index": np.arange(3), "cls_attention": attn, "logit": np.zeros(3, np.float32)}
    out = identity_attribution(ds, pred)
    assert out["videos"] == 2 and out["top_identity_is_manipulated"] == pytest.approx(0.5)
    share = 3e-3 / (3e-3 + 1e-4)
    assert out["mean_attention_on_manipulated"] == pytest.approx((share + (1 - share)) / 2)
