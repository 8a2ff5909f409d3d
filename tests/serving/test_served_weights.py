"""What ``mintime serve`` says it serves, and a ``--checkpoint`` the repository would override."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mintime.fileio import sha256_file
from mintime.repository import MARKER_FILENAME, PROVENANCE_FILENAME
from mintime.serving.cli import checkpoint_overridden
from tests.conftest import REPO


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(REPO / "model_repository", dst, ignore=shutil.ignore_patterns("[2-9]*", "__pycache__"))
    return dst


def _export(repo: Path, network: str, checkpoint: Path) -> None:
    """A trusted exported version 2 of ``network`` made from ``checkpoint`` (no artifact files needed)."""
    vdir = repo / network / "2"
    vdir.mkdir()
    source = {"checkpoint": {"path": str(checkpoint), "sha256": sha256_file(checkpoint)}}
    (vdir / PROVENANCE_FILENAME).write_text(json.dumps({"network": network, "source": source, "files": {}}))
    (vdir / MARKER_FILENAME).write_text("{}")


def test_checkpoint_is_served_by_the_python_models(repository: Path, tmp_path: Path) -> None:
    ck = tmp_path / "mine.pt"
    ck.write_bytes(b"weights")
    assert checkpoint_overridden(repository, ck) is None


def test_exported_versions_override_the_checkpoint(repository: Path, tmp_path: Path) -> None:
    exported, mine = tmp_path / "exported.pt", tmp_path / "mine.pt"
    exported.write_bytes(b"exported weights")
    mine.write_bytes(b"my weights")
    for network in ("backbone", "temporal"):
        _export(repository, network, exported)
    problem = checkpoint_overridden(repository, mine)
    assert problem is not None
    assert problem.startswith(
        f"--checkpoint {mine} would be ignored: backbone version 2 (exported from {exported}"
    )
    assert "mintime export --checkpoint" in problem
    assert checkpoint_overridden(repository, exported) is None  # the exported weights themselves are fine


def test_logs_go_to_one_known_folder(monkeypatch, tmp_path: Path) -> None:
    from mintime.serving.server import LOG_DIR_ENV, new_log_path

    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))
    paths = []
    for _ in range(4):
        path = new_log_path(keep=3)
        path.write_text("log")
        paths.append(path)
    assert all(p.parent == tmp_path / "logs" and p.name.startswith("tritonserver-") for p in paths)
    assert len(set(paths)) == 4
    assert sorted((tmp_path / "logs").glob("*.log")) == sorted(paths[-3:])
