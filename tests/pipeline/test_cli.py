"""What a user of ``mintime predict`` sees: the model named, one-line errors, no video stopping the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("av")

from mintime.cli import main as cli_main  # noqa: E402


@pytest.fixture(scope="module")
def noise_clip(tmp_path_factory) -> Path:
    from tests.helpers.media import make_clip

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("noise") / "noise.mp4"
    return make_clip(
        path, frames=8, size=(96, 64), draw=lambda i: rng.integers(0, 255, (64, 96, 3), np.uint8)
    )


def test_version() -> None:
    from mintime import __version__

    out = subprocess.run([sys.executable, "-m", "mintime.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"mintime {__version__}"


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "unknown device 'gpu': use cpu, cuda or cuda:N"),
        ("cuda:x", "unknown device 'cuda:x'"),
    ],
)
def test_bad_device_is_one_line(device: str, message: str, noise_clip: Path, capsys) -> None:
    assert cli_main(["predict", "--device", device, str(noise_clip)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}")


def test_cuda_without_cuda_is_one_line(noise_clip: Path, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert cli_main(["predict", "--device", "cuda", str(noise_clip)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sees no CUDA GPU; use --device cpu" in err[0]


def test_bad_weights_are_reported_before_any_video(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    missing_video = tmp_path / "never-read.mp4"  # would fail if it were read first
    assert cli_main(["predict", "--checkpoint", str(bad), str(missing_video)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "bad.pt" in err[0]
    assert cli_main(["predict", "--embedder-weights", str(tmp_path / "nope.pt"), str(missing_video)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --embedder-weights: file not found: {tmp_path / 'nope.pt'}"]


@pytest.mark.parametrize("which", ["default", "demo"])
def test_shipped_weights_are_named_with_their_caveat(which: str, noise_clip: Path, capsys) -> None:
    from mintime.networks import DEFAULT_CHECKPOINT, DEMO_CAVEAT, DEMO_CHECKPOINT, DEMO_NAME, file_digest

    path = DEFAULT_CHECKPOINT if which == "default" else DEMO_CHECKPOINT
    name, caveat = (DEMO_NAME, DEMO_CAVEAT) if which == "demo" else ("mintime-sbi-lite0-v1", None)
    extra = [] if which == "default" else ["--checkpoint", str(path)]
    assert cli_main(["predict", *extra, "--num-frames", "4", str(noise_clip)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"model: {name} (mintime, efficientnet_lite0 backbone; {path.name} sha256:")
    assert out[1].startswith("note: ") and (caveat is None or out[1] == f"note: {caveat}")
    assert out[2].startswith("noise.mp4: no face found")

    assert cli_main(["predict", *extra, "--json", "--num-frames", "4", str(noise_clip)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"]["name"] == name and result["model"]["caveat"] == out[1][len("note: ") :]
    (weights,) = result["model"]["weights"]
    assert weights == {"file": str(path), "sha256": file_digest(path)}


def test_an_unexpected_error_does_not_stop_the_run(
    noise_clip: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """One video failing in an unforeseen way gets its error line; the next video is still answered."""
    from mintime import pipeline

    real = pipeline.Predictor.predict_decoded
    calls = []

    def flaky(self, clip):
        calls.append(clip)
        if len(calls) == 1:
            raise AttributeError("'VideoStream' object has no attribute 'codec_tag'")
        return real(self, clip)

    monkeypatch.setattr(pipeline.Predictor, "predict_decoded", flaky)
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    code = cli_main(["predict", "--num-frames", "4", str(noise_clip), str(noise_clip), str(empty)])
    captured = capsys.readouterr()
    assert code == 1 and len(calls) == 2
    assert f"warning: no video file in folder {empty}" in captured.err
    assert (
        f"{noise_clip}: ERROR AttributeError: 'VideoStream' object has no attribute 'codec_tag'"
        in captured.err
    )
    assert "noise.mp4: no face found" in captured.out
    assert "Traceback" not in captured.err


def test_a_partial_decode_is_visible(tmp_path: Path, capsys) -> None:
    """A file cut short, with its index at the front, still decodes partly: the result says so, named."""
    from tests.helpers.media import make_clip

    full = make_clip(
        tmp_path / "full.mp4", frames=60, size=(96, 64), container_options={"movflags": "faststart"}
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    assert cli_main(["predict", "--json", "--num-frames", "4", str(cut)]) == 0
    result = json.loads(capsys.readouterr().out)
    (warning,) = result["warnings"]
    assert warning.startswith("only ") and "of the 60 frames the container declares decoded" in warning
    assert cli_main(["predict", "--num-frames", "4", str(cut)]) == 0
    out = capsys.readouterr().out
    assert f"  warning: cut.mp4: {warning}" in out.splitlines()
    # a complete file carries no warnings key at all
    assert cli_main(["predict", "--json", "--num-frames", "4", str(full)]) == 0
    assert "warnings" not in json.loads(capsys.readouterr().out)


def test_missing_optional_part_is_one_line(tmp_path: Path) -> None:
    """`mintime predict` in a client-only install (no torch, no av): one line naming the module and the fix."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['av'] = None\n"
        "from mintime.cli import main; sys.exit(main(['predict', 'video.mp4']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert (
        lines[0].startswith("error: `mintime predict` needs the module 'torch'") and "./setup.sh" in lines[0]
    )


@pytest.mark.needs_data
def test_a_tiny_checkpoint_predicts_with_its_own_slot_count(data_dir: Path, tmp_path: Path, capsys) -> None:
    """The slot count comes from the checkpoint (8 here), not the published weights' 16."""
    from tests.e2e.weights import make_tiny_training_checkpoint

    ck = make_tiny_training_checkpoint(tmp_path / "best.pt")
    video = data_dir / "videos" / "ffpp_634_real_720p.mp4"
    assert cli_main(["predict", "--json", "--num-frames", "4", "--checkpoint", str(ck), str(video)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["label"] in ("fake", "pristine") and 0.0 <= result["fake_probability"] <= 1.0
    assert len(result["slots"]) == 8 and len(result["slot_attention"]) == 8
    assert result["model"]["name"] == "tiny-8-slots"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-frames", "0"], "argument --num-frames: must be >= 1, got 0"),
        (["--max-identities", "0"], "argument --max-identities: must be >= 1, got 0"),
        (["--detect-scale", "-1"], "argument --detect-scale: must be > 0, got -1"),
    ],
)
def test_bad_numbers_are_argument_errors(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["predict", *args, str(tmp_path / "never-read.mp4")])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_facenet_without_weights_names_the_option(tmp_path: Path, capsys, monkeypatch) -> None:
    from mintime import networks

    def never(**_kw):
        raise AssertionError("the model must not load before the arguments are checked")

    monkeypatch.setattr(networks, "load_networks", never)
    assert cli_main(["predict", "--embedder", "facenet", str(tmp_path / "never-read.mp4")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --embedder facenet needs --embedder-weights FILE")
    assert "its default, resnet" in line


def test_verbose_adds_the_traceback_of_a_failed_video(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    assert cli_main(["-v", "predict", "--num-frames", "4", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"{bad}: ERROR " in err
    assert cli_main(["predict", "--num-frames", "4", str(bad)]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("--checkpoint", "# README\n", "is not a torch checkpoint"),
        (
            "--model-weights",
            None,
            "is a project checkpoint (from `mintime train`): give it with --checkpoint",
        ),
    ],
)
def test_weights_errors_speak_to_a_cli_user(option, content, message, tmp_path: Path, capsys) -> None:
    from mintime.networks import DEMO_CHECKPOINT

    if content is None:
        args = [option, str(DEMO_CHECKPOINT), "--extractor-weights", str(DEMO_CHECKPOINT), "--variant", "ef"]
    else:
        path = tmp_path / "README.md"
        path.write_text(content)
        args = [option, str(path)]
    assert cli_main(["predict", *args, str(tmp_path / "never-read.mp4")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line
    for hint in ("weights_only", "mintime.checkpoints", "load_checkpoint", "-v for the traceback"):
        assert hint not in line


def test_predict_help_shows_every_default(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default auto)" in text and "(default 16)" in text


def test_a_scaled_video_says_its_source_size(tmp_path: Path, capsys) -> None:
    """A 4K clip is analysed at 1920x1080: the JSON records the source size and the scale, the boxes' pixels,
    and the annotated copy says why it is not 4K."""
    from mintime.video import probe
    from tests.helpers.media import flat_clip

    uhd = flat_clip(tmp_path / "uhd.mp4", (3840, 2160), frames=3, value=128)
    out = tmp_path / "annotated.mp4"
    assert cli_main(["predict", "--json", "--num-frames", "3", "--output-video", str(out), str(uhd)]) == 0
    clip = json.loads(capsys.readouterr().out)["clip"]
    assert (clip["width"], clip["height"], clip["source_width"], clip["source_height"]) == (
        1920,
        1080,
        3840,
        2160,
    )
    assert clip["scale"] == 0.5 and clip["boxes_in"].startswith("analysed frame pixels")
    assert (probe(out)["width"], probe(out)["height"]) == (1920, 1080)
    assert cli_main(["predict", "--num-frames", "3", "--output-video", str(out), str(uhd)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line == (
        f"  annotated video: {out} (1920x1080: the frames as analysed, scaled from 3840x2160 by the decode "
        "budget, max_output_pixels)"
    )
