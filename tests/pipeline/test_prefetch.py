"""``mintime predict`` over several videos decodes the next one in a background thread: same answers, in order,
bounded look-ahead, a bad video still fails alone."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("av")

from mintime.cli import main as cli_main  # noqa: E402
from mintime.config import PipelineConfig  # noqa: E402
from mintime.pipeline import Predictor  # noqa: E402
from tests.conftest import DATA  # noqa: E402


class _Recording(Predictor):
    """A predictor whose decode is a slow stand-in that records how many decodes ran ahead of the consumer."""

    def __init__(self) -> None:
        super().__init__(PipelineConfig(), engines=None, stage=object())  # type: ignore[arg-type]
        self.started: list[str] = []
        self.lock = threading.Lock()

    def decode(self, source):
        with self.lock:
            self.started.append(source)
        time.sleep(0.02)
        if source.startswith("bad"):
            raise ValueError(f"cannot decode {source}")
        return f"clip of {source}"


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_decoded_keeps_order_bounds_look_ahead_and_passes_errors(prefetch: int) -> None:
    pred = _Recording()
    sources = ["a", "bad1", "b", "c", "d", "e"]
    seen = []
    for k, (src, clip) in enumerate(pred.decoded(sources, prefetch=prefetch)):
        # decodes started so far: this one and at most `prefetch` ahead of it
        assert len(pred.started) <= k + 1 + prefetch
        time.sleep(0.05)  # the consumer is slower than the decoder: the look-ahead fills up
        seen.append((src, clip if isinstance(clip, str) else f"error: {clip}"))
    assert seen == [
        ("a", "clip of a"),
        ("bad1", "error: cannot decode bad1"),
        ("b", "clip of b"),
        ("c", "clip of c"),
        ("d", "clip of d"),
        ("e", "clip of e"),
    ]
    assert pred.started == sources  # every video decoded once, in order


@pytest.mark.needs_data
def test_predict_with_and_without_prefetch_gives_the_same_json(tmp_path: Path, capsys) -> None:
    clips = [DATA / "videos" / "two_people_one_fake_720p.mp4", DATA / "videos" / "ffpp_634_real_720p.mp4"]
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    args = ["predict", "--json", "--num-frames", "4", str(clips[0]), str(bad), str(clips[1])]
    outputs = []
    for prefetch in ("0", "2"):
        assert cli_main([*args, "--prefetch", prefetch]) == 1  # the text file fails, alone
        outputs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    assert outputs[0] == outputs[1]
    assert [r["video"] for r in outputs[0]] == [str(clips[0]), str(bad), str(clips[1])]
    assert outputs[0][1]["status"] == "error" and outputs[0][0]["fake_probability"] is not None
