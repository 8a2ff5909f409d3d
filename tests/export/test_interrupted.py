"""Exports cannot mix (issue 11, item 5): an export killed mid-way leaves nothing trusted, the server refuses
an untrusted or mixed pair naming both, and `--if-missing` re-exports what is needed from the weights asked for.

The reproducer: SIGKILL right when ``backbone/2`` was committed; before, the next ``--if-missing`` run (what the
Docker entrypoint does) exported only ``temporal`` from another checkpoint and the served pair mixed two
checkpoints silently.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from export import repository as repo
from export.cli import networks_to_export
from export.workflow import ExportOptions, export_to_repository
from tests.conftest import REPO
from tests.export.conftest import tiny_models

SOURCE_A = {"checkpoint": {"path": "/weights/a.pt", "sha256": "a" * 64}}
SOURCE_B = {"checkpoint": {"path": "/weights/b.pt", "sha256": "b" * 64}}

# Runs an export of the tiny models (source A) and blocks forever right after backbone/2 is committed, so that
# the test kills it at exactly that point (the timing) without racing.
SCRIPT = """
import sys, time
from export import repository as repo
from export.workflow import ExportOptions, export_to_repository
from tests.export.conftest import tiny_models

commit = repo.commit_version
def commit_and_wait(staging, model_dir, version):
    target = commit(staging, model_dir, version)
    if target.parent.name == "backbone":
        print("COMMITTED", flush=True)
        time.sleep(3600)
    return target
repo.commit_version = commit_and_wait
export_to_repository(
    tiny_models(), ExportOptions(model_repository=sys.argv[1], fp16=False),
    {"checkpoint": {"path": "/weights/a.pt", "sha256": "a" * 64}},
)
"""


def _kill_after_backbone_commit(repository: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(repository)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "COMMITTED", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_export_killed_after_backbone_commit_is_never_served_or_trusted(repository_copy: Path) -> None:
    _kill_after_backbone_commit(repository_copy)
    backbone = repository_copy / "backbone"
    assert repo.versions(backbone) == [1, 2] and repo.is_exported(backbone / "2")
    assert repo.versions(repository_copy / "temporal") == [1]
    assert "no export.complete marker" in repo.version_problem(backbone / "2")

    # the server refuses to start, naming the interrupted version
    from mintime.serving.server import ServerStartError, TritonServer

    with pytest.raises(
        ServerStartError, match=r"backbone version 2 cannot be served: no export.complete marker"
    ):
        TritonServer(repository_copy).check_served_weights()

    # --if-missing with other weights (checkpoint B): both networks must be exported, not only temporal
    assert networks_to_export(
        repository_copy, ["backbone", "temporal"], "auto", repo.weights_id(SOURCE_B)
    ) == [
        "backbone",
        "temporal",
    ]
    results = export_to_repository(
        tiny_models(seed=1), ExportOptions(model_repository=repository_copy, fp16=False), SOURCE_B
    )
    assert [(r.network, r.version) for r in results] == [("backbone", 2), ("temporal", 2)]
    pair = repo.check_served_pair(repository_copy)
    assert [p.weights for p in pair] == [repo.weights_id(SOURCE_B)] * 2
    for r in results:
        marker = json.loads((r.version_dir / repo.MARKER_FILENAME).read_text())
        assert marker["weights"] == {"checkpoint": "b" * 64}
    assert (
        networks_to_export(repository_copy, ["backbone", "temporal"], "auto", repo.weights_id(SOURCE_B)) == []
    )


def test_mixed_checkpoints_are_refused_naming_both(repository_copy: Path) -> None:
    export_to_repository(tiny_models(), ExportOptions(model_repository=repository_copy, fp16=False), SOURCE_A)
    export_to_repository(
        tiny_models(seed=1),
        ExportOptions(model_repository=repository_copy, networks=["temporal"], fp16=False),
        SOURCE_B,
    )
    with pytest.raises(repo.MixedExportError) as info:
        repo.check_served_pair(repository_copy)
    message = str(info.value)
    assert "backbone version 2 (exported from /weights/a.pt; checkpoint sha256 aaaaaaaaaaaa)" in message
    assert "temporal version 3 (exported from /weights/b.pt; checkpoint sha256 bbbbbbbbbbbb)" in message
    # --if-missing for checkpoint A re-exports only temporal; for B only backbone
    assert networks_to_export(
        repository_copy, ["backbone", "temporal"], "auto", repo.weights_id(SOURCE_A)
    ) == ["temporal"]
    assert networks_to_export(
        repository_copy, ["backbone", "temporal"], "auto", repo.weights_id(SOURCE_B)
    ) == ["backbone"]
    # a file changed after the export is not trusted either
    onnx = repository_copy / "temporal" / "3" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\x00")
    assert "SHA-256 differs" in repo.version_problem(onnx.parent)
    assert repo.remove_untrusted(repository_copy / "temporal") == [3]
    assert repo.versions(repository_copy / "temporal") == [1, 2]


def test_pytorch_fallback_weights_are_compared_too(repository_copy: Path, tmp_path: Path) -> None:
    """A non-exported version serves $MINTIME_CHECKPOINT (else the shipped default checkpoint) with PyTorch."""
    ck = tmp_path / "other.pt"
    ck.write_bytes(b"not the demo weights")
    backbone, temporal = repo.check_served_pair(repository_copy, env={})
    assert (
        backbone.origin.startswith("PyTorch with the shipped default checkpoint")
        and backbone.weights == temporal.weights
    )
    assert repo.check_served_pair(repository_copy, env={"MINTIME_CHECKPOINT": str(ck)})[0].weights == {
        "checkpoint": repo.sha256_file(ck)
    }
    export_to_repository(
        tiny_models(),
        ExportOptions(model_repository=repository_copy, networks=["backbone"], fp16=False),
        SOURCE_A,
    )
    with pytest.raises(
        repo.MixedExportError, match=r"temporal version 1 \(PyTorch with \$MINTIME_CHECKPOINT"
    ):
        repo.check_served_pair(repository_copy, env={"MINTIME_CHECKPOINT": str(ck)})


def test_cli_check_exit_codes(repository_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from export.cli import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--check", "--model-repository", str(repository_copy)])) == 0
    assert capsys.readouterr().out.count("ok: ") == 2
    _kill_after_backbone_commit(repository_copy)
    assert run(parser.parse_args(["--check", "--model-repository", str(repository_copy)])) == 1
    assert "backbone version 2 cannot be served" in capsys.readouterr().err


def test_export_refuses_the_committed_repository() -> None:
    with pytest.raises(ValueError, match="refusing to export into the committed model repository"):
        export_to_repository(
            tiny_models(), ExportOptions(model_repository=REPO / "model_repository"), SOURCE_A
        )


def test_interrupted_staging_is_cleaned(repository_copy: Path) -> None:
    staging = repo.staging_dir(repository_copy / "temporal", 2)
    (staging / "model.onnx").write_bytes(b"half")
    export_to_repository(
        tiny_models(),
        ExportOptions(model_repository=repository_copy, networks=["temporal"], fp16=False),
        SOURCE_A,
    )
    assert not staging.exists() and repo.versions(repository_copy / "temporal") == [1, 2]
