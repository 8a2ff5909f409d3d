"""The bounded fuzz run (benchmarks/fuzz_decode.py): 300 mutated inputs, each in a worker process under time and
memory limits, end as a decoded clip or a VideoDecodeError: no other exception, crash, hang or OOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.helpers.scripts import load_script

pytest.importorskip("av")


fuzz = load_script(REPO / "benchmarks" / "fuzz_decode.py")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_corpus")


def test_inputs_are_reproducible_from_the_seed_and_index(corpus_dir: Path) -> None:
    files = fuzz.build_corpus(corpus_dir, shared=False)
    data, names = [p.read_bytes() for p in files], [p.name for p in files]
    a = [fuzz.make_input(data, names, 0, i) for i in range(60)]
    assert a == [fuzz.make_input(data, names, 0, i) for i in range(60)]
    assert a != [fuzz.make_input(data, names, 1, i) for i in range(60)]
    assert {k for k, _, _ in a} >= {"bitflip", "structure", "truncate"}
    rng = np.random.default_rng(0)
    for kind in fuzz.KINDS:
        out = fuzz.mutate(kind, data[0], data[1], rng)
        assert isinstance(out, bytes) and (kind == "clean") == (out == data[0])


def test_bounded_fuzz_run_has_no_failures(corpus_dir: Path, tmp_path: Path) -> None:
    s = fuzz.run_fuzz(inputs=300, workers=2, timeout=30, memory_mb=4096, corpus_dir=corpus_dir, out=tmp_path)
    assert s["inputs"] == 300
    failures = s["failures"]
    assert s["other_exceptions"] == 0, failures
    assert (s["crashes"], s["hangs"], s["out_of_memory"]) == (0, 0, 0), failures
    assert s["decoded"] > 50 and s["clean_errors"] > 50  # the mutations reach both outcomes
    assert "too large" in s["errors_by_prefix"]  # the 8K bombs are refused
    assert 0 < s["peak_rss_mb"] < 1024, s["peak_rss_input"]
    assert not list(tmp_path.iterdir())
