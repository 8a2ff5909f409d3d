"""Reading a Triton model repository: which version of a network Triton serves, whether it can be trusted, and
which weights it holds. Shared by ``mintime serve`` (start-up check, what it prints) and ``mintime export``
(:mod:`export.repository` writes what this reads).

Triton serves the highest numbered version folder of a model (``version_policy`` latest 1, the default). An
exported version holds ``export.json`` (provenance, each file's SHA-256) from the moment it exists, and
``export.complete`` (:data:`MARKER_FILENAME`) written *last*, once every network of the export is written and
verified; it is trusted only with its marker and with files whose SHA-256 still match (:func:`version_problem`).
A version folder without ``export.json`` (the committed Python-backend ``1/model.py``) runs PyTorch with the
checkpoint of the model parameter ``checkpoint``, else ``$MINTIME_CHECKPOINT``, else the shipped default checkpoint.
Imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mintime.fileio import sha256_file

__all__ = [
    "PROVENANCE_FILENAME",
    "MARKER_FILENAME",
    "PRODUCTION_CONFIG",
    "CHECKPOINT_ENV",
    "DEFAULT_CHECKPOINT",
    "DEMO_CHECKPOINT",
    "MixedExportError",
    "ServedVersion",
    "default_model_repository",
    "versions",
    "latest_version",
    "sha256_file",
    "weights_id",
    "is_exported",
    "version_problem",
    "served_version",
    "check_served_pair",
]

PROVENANCE_FILENAME = "export.json"
#: Written last into an exported version folder: the version is complete and verified.
MARKER_FILENAME = "export.complete"
PRODUCTION_CONFIG = Path("configs") / "production.pbtxt"
#: Environment variable naming the project checkpoint the Python-backend networks load.
CHECKPOINT_ENV = "MINTIME_CHECKPOINT"
#: The shipped default checkpoint (what a network without any other weights loads): the self-blended model.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "sbi_lite0.pt"
#: The demo checkpoint of earlier releases (synthetic swaps only), kept for comparison and tests.
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "demo.pt"


def default_model_repository() -> Path:
    """``model_repository/`` of the source checkout this package runs from, else of the working directory."""
    here = Path(__file__).resolve().parents[1] / "model_repository"
    return here if here.is_dir() else Path.cwd() / "model_repository"


def versions(model_dir: str | os.PathLike) -> list[int]:
    """The numbered version folders of a model, ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(model_dir: str | os.PathLike) -> int | None:
    """The highest version (the one Triton serves), None when there is none."""
    found = versions(model_dir)
    return found[-1] if found else None


class MixedExportError(ValueError):
    """The served backbone and temporal versions are untrusted, or hold weights of two different checkpoints."""


def weights_id(source: Mapping[str, Any]) -> dict[str, str]:
    """The identity of an export's weights: ``{role: sha256}`` of the files it was made from (``export.json``'s
    ``source`` without the loader description)."""
    return {str(k): str(v["sha256"]) for k, v in source.items() if isinstance(v, Mapping) and "sha256" in v}


def is_exported(version_dir: str | os.PathLike) -> bool:
    """The folder was written by ``mintime export`` (it holds ``export.json``)."""
    return (Path(version_dir) / PROVENANCE_FILENAME).is_file()


def version_problem(version_dir: str | os.PathLike, *, check_hashes: bool = True) -> str | None:
    """Why an exported version must not be trusted (None: complete and verified).

    Args:
        version_dir: an exported version folder.
        check_hashes: also compare every file's SHA-256 with ``export.json`` (else only sizes).
    """
    version_dir = Path(version_dir)
    try:
        record = json.loads((version_dir / PROVENANCE_FILENAME).read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable {PROVENANCE_FILENAME} ({exc})"
    if not (version_dir / MARKER_FILENAME).is_file():
        return f"no {MARKER_FILENAME} marker: the export was interrupted before it was verified"
    for name, info in (record.get("files") or {}).items():
        path = version_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != info.get("bytes"):
            return f"{name} has {path.stat().st_size} bytes, export.json says {info.get('bytes')}"
        if check_hashes and sha256_file(path) != info.get("sha256"):
            return f"{name} changed since the export (SHA-256 differs from export.json)"
    return None


@dataclass
class ServedVersion:
    """What Triton will serve for one network.

    Attributes:
        network: ``backbone`` or ``temporal``.
        version: the version number (None: no version folder).
        weights: ``{role: sha256}`` of the weights it holds (empty when unknown).
        origin: where the weights come from, in words (for messages).
        problem: why it must not be served (None: fine).
        checkpoint: the checkpoint file PyTorch loads (None for an exported version).
        model: the ``model`` block an exported version recorded (:attr:`mintime.networks.Networks.model`).
    """

    network: str
    version: int | None
    weights: dict[str, str]
    origin: str
    problem: str | None = None
    checkpoint: str | None = None
    model: dict[str, Any] | None = None

    def describe(self) -> str:
        shas = ", ".join(f"{k} sha256 {v[:12]}" for k, v in sorted(self.weights.items())) or "unknown weights"
        return f"{self.network} version {self.version} ({self.origin}; {shas})"


def _parameter(config_text: str, key: str) -> str:
    m = re.search(
        r'key\s*:\s*"' + re.escape(key) + r'"\s*value\s*\{\s*string_value\s*:\s*"([^"]*)"', config_text
    )
    return m.group(1).strip() if m else ""


def _config_in_use(model_dir: Path, config_name: str | None) -> Path:
    if config_name and (model_dir / "configs" / f"{config_name}.pbtxt").is_file():
        return model_dir / "configs" / f"{config_name}.pbtxt"
    return model_dir / "config.pbtxt"


def served_version(
    model_dir: str | os.PathLike, *, config_name: str | None = None, env: Mapping[str, str] | None = None
) -> ServedVersion:
    """The version Triton serves for a network (the highest) and the weights it holds.

    An exported version holds the weights named in its ``export.json`` (and must be trusted); a version that
    export did not write runs PyTorch with the checkpoint of the model parameter ``checkpoint``, else
    ``$MINTIME_CHECKPOINT`` (from ``env``), else the shipped default checkpoint (the Python models' rule).
    """
    model_dir = Path(model_dir)
    network = model_dir.name
    env = os.environ if env is None else env
    latest = latest_version(model_dir)
    if latest is None:
        return ServedVersion(network, None, {}, "no version folder", f"{model_dir} has no version folder")
    vdir = model_dir / str(latest)
    config = _config_in_use(model_dir, config_name)
    text = config.read_text() if config.is_file() else ""
    if is_exported(vdir) and _parameter(text, "runtime") != "torch":
        record = json.loads((vdir / PROVENANCE_FILENAME).read_text())
        source = record.get("source") or {}
        paths = ", ".join(
            str(v.get("path")) for v in source.values() if isinstance(v, Mapping) and "path" in v
        )
        origin = f"exported from {paths or 'unknown files'}"
        loader = source.get("loader")
        model = loader if isinstance(loader, dict) and "name" in loader else None
        return ServedVersion(network, latest, weights_id(source), origin, version_problem(vdir), model=model)
    artifacts = [n for n in ("model.onnx", "model.plan") if (vdir / n).is_file()]
    if artifacts and _parameter(text, "runtime") != "torch":
        return ServedVersion(
            network,
            latest,
            {},
            f"{', '.join(artifacts)} of unknown origin",
            f"{vdir} holds {', '.join(artifacts)} without {PROVENANCE_FILENAME}: its weights are unknown",
        )
    value, origin = _parameter(text, "checkpoint"), "model parameter 'checkpoint'"
    if not value:
        value, origin = env.get(CHECKPOINT_ENV, "").strip(), f"${CHECKPOINT_ENV}"
    if not value:
        value, origin = str(DEFAULT_CHECKPOINT), "the shipped default checkpoint"
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = model_dir / path
    if not path.is_file():
        return ServedVersion(
            network, latest, {}, f"PyTorch, {origin} {path}", f"checkpoint not found: {path}"
        )
    return ServedVersion(
        network,
        latest,
        {"checkpoint": sha256_file(path)},
        f"PyTorch with {origin} {path}",
        checkpoint=str(path),
    )


def check_served_pair(
    model_repository: str | os.PathLike,
    *,
    config_name: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[ServedVersion, ServedVersion]:
    """The served ``backbone`` and ``temporal`` versions, checked: both trusted, both from the same weights.

    Raises:
        MixedExportError: an untrusted version, or two different sets of weights (the message names both).
    """
    root = Path(model_repository)
    backbone, temporal = (
        served_version(root / n, config_name=config_name, env=env) for n in ("backbone", "temporal")
    )
    for served in (backbone, temporal):
        if served.problem:
            raise MixedExportError(
                f"{served.network} version {served.version} cannot be served: {served.problem}"
            )
    if backbone.weights != temporal.weights:
        raise MixedExportError(
            f"the served networks come from different weights: {backbone.describe()} but "
            f"{temporal.describe()}; export both from one checkpoint (mintime export) or remove the newer version"
        )
    return backbone, temporal
