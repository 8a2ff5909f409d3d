"""The model repository side of export: writing version folders, config dims, provenance, the completion marker.

The reading side (which version Triton serves, whether it is trusted, which weights it holds) is
:mod:`mintime.repository`, shared with ``mintime serve``; its names are re-exported here.

Triton serves the highest numbered version folder of a model (``version_policy`` latest 1, the default). Export
writes version N+1 beside the current one, checks it, and only then removes older *exported* versions beyond
``keep``; the hand-written ``config.pbtxt`` files are edited in place (only the ``dims`` of the named tensors
change, comments and layout stay), and re-parsed to prove they are still valid.

Trust: an exported version folder holds ``export.json`` (provenance, each file's SHA-256) from the moment it
exists, and ``export.complete`` (:data:`MARKER_FILENAME`) written *last*, once every network of the export is
written and verified. A version is trusted only with its marker and with files whose SHA-256 still match
(:func:`version_problem`). Version folders without ``export.json`` are not exports (the committed Python-backend
``1/model.py``): export never prunes or rewrites them. :func:`check_served_pair` says which weights the served
``backbone`` and ``temporal`` versions hold and refuses a pair from two checkpoints, or an untrusted version.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mintime.repository import (
    MARKER_FILENAME,
    PRODUCTION_CONFIG,
    PROVENANCE_FILENAME,
    MixedExportError,
    ServedVersion,
    check_served_pair,
    default_model_repository,
    is_exported,
    latest_version,
    served_version,
    sha256_file,
    version_problem,
    versions,
    weights_id,
)

__all__ = [
    "MARKER_FILENAME",
    "committed_repository",
    "default_export_repository",
    "PROVENANCE_FILENAME",
    "ServedVersion",
    "MixedExportError",
    "PRODUCTION_CONFIG",
    "versions",
    "latest_version",
    "next_version",
    "staging_dir",
    "commit_version",
    "prune_versions",
    "config_paths",
    "read_max_batch_size",
    "set_tensor_dims",
    "update_config_dims",
    "parse_config",
    "sha256_file",
    "write_provenance",
    "weights_id",
    "is_exported",
    "write_marker",
    "version_problem",
    "remove_untrusted",
    "served_version",
    "check_served_pair",
]

logger = logging.getLogger(__name__)


def committed_repository() -> Path:
    """``model_repository/`` of the source checkout (tracked files: export only reads it)."""
    return default_model_repository()


def default_export_repository() -> Path:
    """Where ``mintime export`` writes by default: ``build/model_repository`` beside the committed one
    (``build/`` is git-ignored); serve it with ``mintime serve --model-repository build/model_repository``."""
    return committed_repository().parent / "build" / "model_repository"


# ---------------------------------------------------------------------------------------------------------------
# version folders
# ---------------------------------------------------------------------------------------------------------------
def next_version(model_dir: str | os.PathLike) -> int:
    """The version number export writes next (highest + 1, or 1)."""
    return (latest_version(model_dir) or 0) + 1


def staging_dir(model_dir: str | os.PathLike, version: int) -> Path:
    """An empty hidden folder inside the model's folder (Triton ignores non-numeric names) to build a version in."""
    path = Path(model_dir) / f".export-{version}.tmp"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def commit_version(staging: str | os.PathLike, model_dir: str | os.PathLike, version: int) -> Path:
    """Rename a staged folder to its version number (atomic on one filesystem).

    Raises:
        FileExistsError: the version folder already exists.
    """
    target = Path(model_dir) / str(version)
    if target.exists():
        raise FileExistsError(f"version folder already exists: {target}")
    os.replace(staging, target)
    return target


def prune_versions(model_dir: str | os.PathLike, keep: int) -> list[int]:
    """Remove all but the ``keep`` highest *exported* versions; returns the removed version numbers.

    Version folders that export did not write (no ``export.json``: the committed Python-backend version) are
    never removed.

    Raises:
        ValueError: ``keep < 1``.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    exported = [v for v in versions(model_dir) if is_exported(Path(model_dir) / str(v))]
    removed = exported[:-keep]
    for v in removed:
        shutil.rmtree(Path(model_dir) / str(v))
        logger.info("removed %s/%d", model_dir, v)
    return removed


# ---------------------------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------------------------
def config_paths(model_dir: str | os.PathLike) -> list[Path]:
    """``config.pbtxt`` and every ``configs/*.pbtxt`` of a model that exist."""
    model_dir = Path(model_dir)
    found = [model_dir / "config.pbtxt"] if (model_dir / "config.pbtxt").is_file() else []
    return found + sorted((model_dir / "configs").glob("*.pbtxt"))


def parse_config(text: str) -> Any:
    """Parse pbtxt text into ``tritonclient.grpc.model_config_pb2.ModelConfig`` (raises on a syntax error)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def read_max_batch_size(path: str | os.PathLike) -> int:
    """``max_batch_size`` of a config file (0 when absent).

    Raises:
        ValueError: the field appears more than once.
    """
    found = re.findall(r"^\s*max_batch_size\s*:\s*(\d+)", Path(path).read_text(), flags=re.M)
    if len(found) > 1:
        raise ValueError(f"{path}: max_batch_size given {len(found)} times")
    return int(found[0]) if found else 0


_NAME = r'name\s*:\s*"{name}"'
_DIMS = re.compile(r"dims\s*:\s*\[([^\]]*)\]")


def set_tensor_dims(text: str, tensor: str, dims: Sequence[int], *, keep_dynamic: bool = False) -> str:
    """Replace the ``dims`` of the input/output named ``tensor`` in config text.

    Args:
        text: the pbtxt text.
        tensor: the tensor's ``name``.
        dims: the new dims (without batch).
        keep_dynamic: keep ``-1`` where the config has ``-1`` (a config meant for any checkpoint).

    Raises:
        KeyError: the tensor, or its dims, is not in the text.
        ValueError: the rank differs.
    """
    m = re.search(_NAME.format(name=re.escape(tensor)), text)
    if m is None:
        raise KeyError(f"tensor {tensor!r} not found in the config")
    block_end = text.find("}", m.end())
    d = _DIMS.search(text, m.end(), block_end if block_end >= 0 else len(text))
    if d is None:
        raise KeyError(f"no dims for tensor {tensor!r} in the config")
    old = [int(x) for x in d.group(1).replace(",", " ").split()]
    if len(old) != len(dims):
        raise ValueError(f"{tensor}: config has rank {len(old)} dims {old}, new dims {list(dims)}")
    new = [o if keep_dynamic and o == -1 else int(n) for o, n in zip(old, dims, strict=True)]
    replacement = "dims: [ " + ", ".join(str(x) for x in new) + " ]"
    return text[: d.start()] + replacement + text[d.end() :]


def update_config_dims(
    path: str | os.PathLike, dims: Mapping[str, Sequence[int]], *, keep_dynamic: bool = False
) -> bool:
    """Rewrite the dims of several tensors of one config file in place, then re-parse it.

    Returns:
        True when the file changed.
    """
    path = Path(path)
    text = path.read_text()
    new = text
    for tensor, d in dims.items():
        new = set_tensor_dims(new, tensor, d, keep_dynamic=keep_dynamic)
    if new == text:
        return False
    try:
        parse_config(new)
    except ImportError:  # tritonclient not installed: the regex edit kept the syntax
        pass
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    logger.info("updated dims in %s: %s", path, dict(dims))
    return True


# ---------------------------------------------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------------------------------------------
def write_provenance(version_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``export.json`` into a version folder: the record plus the date and each file's SHA-256."""
    version_dir = Path(version_dir)
    files = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(version_dir.iterdir())
        if p.is_file() and p.name != PROVENANCE_FILENAME
    }
    full = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **record,
        "files": files,
    }
    path = version_dir / PROVENANCE_FILENAME
    path.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------------
# trust: the completion marker, and which weights the served versions hold
# ---------------------------------------------------------------------------------------------------------------
def write_marker(version_dir: str | os.PathLike, export_id: str) -> Path:
    """Write the completion marker of a verified version (atomically: temporary file, then rename)."""
    version_dir = Path(version_dir)
    record = json.loads((version_dir / PROVENANCE_FILENAME).read_text())
    marker = {
        "export_id": export_id,
        "network": record.get("network"),
        "version": record.get("version"),
        "weights": weights_id(record.get("source") or {}),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = version_dir / MARKER_FILENAME
    tmp = version_dir / f".{MARKER_FILENAME}.tmp"
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def remove_untrusted(model_dir: str | os.PathLike) -> list[int]:
    """Remove staging folders and exported versions that are not trusted; returns the removed versions."""
    model_dir = Path(model_dir)
    for staging in model_dir.glob(".export-*.tmp"):
        shutil.rmtree(staging, ignore_errors=True)
        logger.warning("removed the staging folder of an interrupted export: %s", staging)
    removed = []
    for v in versions(model_dir):
        vdir = model_dir / str(v)
        if is_exported(vdir) and (why := version_problem(vdir)) is not None:
            shutil.rmtree(vdir)
            removed.append(v)
            logger.warning("removed %s: %s", vdir, why)
    return removed
