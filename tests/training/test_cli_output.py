"""What the research commands print: per-epoch progress, refusals of an earlier run's folder and of an unusable
split, one-line errors for expected failures, and complete ``--help`` pages (output captured and asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mintime.cli import main as cli_main  # noqa: E402
from training.progress import EpochReporter, format_duration  # noqa: E402
from training.split import ListRow, write_list  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _train_args(layout: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--config",
        "tiny",
        f"data_path={layout['data']}",
        f"train_list={layout['train']}",
        f"val_list={layout['val']}",
        f"output_dir={out}",
        *extra,
    ]


def _scalar_steps(tb: Path, tag: str = "Training/Loss") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def _mintime(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mintime.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_format_duration_and_eta():
    assert [format_duration(s) for s in (0.04, 4.2, 42, 185, 7620)] == [
        "0.0 s",
        "4.2 s",
        "42 s",
        "3m 05s",
        "2h 07m",
    ]
    rep = EpochReporter(10, enabled=False)
    assert rep.eta(0) is None
    rep.durations = [30.0, 50.0]
    assert rep.eta(1) == pytest.approx(8 * 40.0)  # 8 epochs left at the mean of 40 s


def test_train_reports_every_epoch_and_protects_the_run(tiny_layout, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(_train_args(tiny_layout, out, "epochs=2")) == 0
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2, cap.err
    assert (
        lines[0].startswith("epoch 1/2: train loss ") and " | val loss " in lines[0] and " AUC " in lines[0]
    )
    assert "/epoch, ETA " in lines[0] and "ETA" not in lines[1]  # no ETA after the last epoch
    assert "training mintime on 8 videos (4 real / 4 fake" in cap.err
    assert cap.out.startswith("best epoch ") and cap.out.count("\n") == 1  # stdout: the one summary line
    assert _scalar_steps(out / "tb") == [0, 1]

    # the same command again: refused, the earlier run untouched
    before = (out / "best.pt").stat().st_mtime_ns
    assert cli_main(_train_args(tiny_layout, out, "epochs=2")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out} is not empty (best.pt, config.yaml, ")
    assert "--resume auto" in err and "--overwrite" in err and err.count("\n") == 1
    assert (out / "best.pt").stat().st_mtime_ns == before

    # resume=auto over a run that never finished an epoch: nothing to resume, so it is refused too
    (out / "last.state.pt").rename(out / "state.bak")
    assert cli_main(_train_args(tiny_layout, out, "epochs=3", "--resume", "auto")) == 2
    assert capsys.readouterr().err.startswith(f"error: {out} holds no last.state.pt to resume from (")
    (out / "state.bak").rename(out / "last.state.pt")

    # resuming continues the same TensorBoard run
    assert cli_main(_train_args(tiny_layout, out, "epochs=3", "--resume", "auto")) == 0
    err = capsys.readouterr().err
    assert "resumed from" in err and "at epoch 3" in err
    assert [ln.split(":")[0] for ln in err.splitlines() if ln.startswith("epoch ")] == ["epoch 3/3"]
    assert _scalar_steps(out / "tb") == [0, 1, 2]

    # --overwrite starts afresh: one run in tb/, nothing of the earlier one left
    assert cli_main(_train_args(tiny_layout, out, "epochs=1", "--overwrite", "--no-progress")) == 0
    cap = capsys.readouterr()
    assert "epoch 1/1" not in cap.err  # --no-progress: the lines go to the log only
    assert len(list((out / "tb").iterdir())) == 1 and _scalar_steps(out / "tb") == [0]
    assert cap.out.startswith("best epoch 1 ")


def test_unusable_device_is_one_line(tiny_layout, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be shown")
    assert cli_main(_train_args(tiny_layout, tmp_path / "r", "epochs=1", "--device", "cuda")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' is not available: torch ") and err.count("\n") == 1
    assert not (tmp_path / "r").exists(), "nothing written before the device check"
    code = cli_main(
        [
            "evaluate",
            "--checkpoint",
            str(tmp_path),
            "--list",
            str(tiny_layout["val"]),
            "--data-path",
            str(tmp_path),
        ]
        + ["--device", "gpu"]
    )
    assert code == 2 and capsys.readouterr().err == "error: unknown device 'gpu': use cpu, cuda or cuda:N\n"


def test_evaluate_and_synth_missing_inputs(tmp_path, capsys):
    code = cli_main(
        [
            "evaluate",
            "--checkpoint",
            str(tmp_path / "nope.pt"),
            "--list",
            "x.csv",
            "--data-path",
            str(tmp_path),
        ]
    )
    assert code == 2 and capsys.readouterr().err == f"error: checkpoint not found: {tmp_path / 'nope.pt'}\n"
    code = cli_main(
        ["synth", "--out", str(tmp_path / "s"), "--videos", str(tmp_path / "gone.mp4"), "--images"]
    )
    assert code == 2 and capsys.readouterr().err == f"error: source not found: {tmp_path / 'gone.mp4'}\n"
    assert not (tmp_path / "s").exists()


def _list(path: Path, real: int, fake: int) -> Path:
    rows = [ListRow(f"r{i}.mp4", 0, 0) for i in range(real)] + [
        ListRow(f"f{i}.mp4", 1, 1) for i in range(fake)
    ]
    return write_list(rows, path)


def test_split_refuses_unusable_lists(tmp_path, capsys):
    src = _list(tmp_path / "all.csv", real=12, fake=12)  # 10 % of each method: one video per class in val
    out = tmp_path / "lists"
    assert cli_main(["split", "--train-list", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: val.csv would hold 2 videos (1 real / 1 fake): fewer than 10 videos.")
    assert "--allow-incomplete" in err and err.count("\n") == 1
    assert not out.exists(), "nothing written"
    # one class only in the validation list
    single = _list(tmp_path / "fake_only.csv", real=0, fake=40)
    assert cli_main(["split", "--train-list", str(single), "--out", str(out), "--min-videos", "2"]) == 2
    err = capsys.readouterr().err
    assert "train.csv would hold 36 videos (0 real / 36 fake): no pristine (label 0) video" in err
    assert "val.csv would hold 4 videos (0 real / 4 fake): no pristine (label 0) video" in err
    # enough videos per part
    assert cli_main(["split", "--train-list", str(src), "--out", str(out), "--val-fraction", "0.5"]) == 0
    cap = capsys.readouterr()
    assert "val: 12 videos (6 real / 6 fake" in cap.out and cap.err == ""
    # an explicit flag writes the small split, with a warning on stderr
    assert cli_main(["split", "--train-list", str(src), "--out", str(out), "--allow-incomplete"]) == 0
    cap = capsys.readouterr()
    assert cap.err == "warning: val.csv would hold 2 videos (1 real / 1 fake): fewer than 10 videos\n"
    assert len((out / "val.csv").read_text().splitlines()) == 2
    # a malformed option and a missing list: one line each
    assert cli_main(["split", "--train-list", str(src), "--out", str(out), "--path-map", "a"]) == 2
    assert capsys.readouterr().err == "error: --path-map takes OLD=NEW, got 'a'\n"
    assert cli_main(["split", "--train-list", str(tmp_path / "none.csv"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: list file not found: {tmp_path / 'none.csv'}\n"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("train", ["shipped presets (training/configs/):", "  demo ", "  tiny ", "lr=0.0003", "--overwrite"]),
        ("evaluate", ["Score every video", "--batch-size BATCH_SIZE", "videos per forward (default: 8)"]),
        ("synth", ["synthetic face-swap benchmark", "(default: 100,28,32)", "(default: 0.3)", "Methods:"]),
        ("split", ["stratified", "(default: 0.1)", "--allow-incomplete", "(default: 10)"]),
        ("preprocess", ["face-crop layout", "frames sampled per video (default: 32)", "FAILED line"]),
    ],
)
def test_help_has_descriptions_and_defaults(command, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for piece in expected:
        assert piece in text, f"{piece!r} missing from `mintime {command} --help`"
    assert "(default: None)" not in text and "(default: False)" not in text


def test_preprocess_undecodable_video_is_one_failed_line(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 50)
    run = _mintime("preprocess", str(bad), "--out", str(tmp_path / "faces"), "--no-progress")
    assert run.returncode == 1
    assert run.stderr.startswith("FAILED broken.mp4: VideoDecodeError: ") and run.stderr.count("\n") == 1, (
        run.stderr
    )
    assert "1 videos: 0 processed, 0 already done, 1 failed" in run.stdout
    verbose = _mintime("-v", "preprocess", str(bad), "--out", str(tmp_path / "faces"), "--no-progress")
    assert verbose.returncode == 1 and "Traceback (most recent call last)" in verbose.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--config", "nope"],
            "error: training config not found: nope (a yaml file, or a preset: baseline, demo,",
        ),
        (["--config", "tiny", "lr=abc"], "error: lr: expected float, got 'abc'\n"),
        (["--config", "tiny", "epochs=1.5"], "error: epochs: expected int, got 1.5\n"),
        (["--config", "tiny"], "error: data_path, train_list, val_list not set: give them as key=value"),
    ],
)
def test_train_config_errors_are_one_line(args, message, capsys):
    assert cli_main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_config_file_and_checkpoint_that_are_not_what_they_claim(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [\n")
    assert cli_main(["train", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}: not valid yaml (line 2): ")
    fake = tmp_path / "best.pt"
    fake.write_text("not a checkpoint")
    lst = _list(tmp_path / "l.csv", 1, 1)
    assert (
        cli_main(["evaluate", "--checkpoint", str(fake), "--list", str(lst), "--data-path", str(tmp_path)])
        == 2
    )
    assert (
        capsys.readouterr().err == f"error: {fake}: not a checkpoint (expected best.pt of `mintime train`)\n"
    )


def test_preprocess_names_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    run = _mintime("preprocess", str(tmp_path / "empty"), "--out", str(tmp_path / "faces"))
    assert run.returncode == 2 and run.stdout == ""
    assert f"no video files in {tmp_path / 'empty'} (.avi, " in run.stderr
    assert run.stderr.endswith("error: no video files found (nothing written)\n")
    assert not (tmp_path / "faces").exists()
