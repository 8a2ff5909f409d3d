"""Checkpoint I/O: the authors' published files (strict loading, clear errors) and the project format.

* The authors' files (``MINTIME_XC_Model_checkpoint30``, ``..._Extractor_checkpoint30``) are plain ``torch.save``d
  state dicts, most likely with a ``module.`` prefix (DataParallel); EfficientNet files of their earlier work carry
  ``efficient_net.``. :func:`read_state_dict` unwraps and strips those; :func:`load_state_dict_strict` loads all or
  nothing; :func:`load_original_temporal` builds the matching :class:`~mintime.models.temporal.MintimeTemporal`.
* The project checkpoint is ONE file (written atomically) holding the temporal config, both state dicts, the
  backbone name and metadata, readable with ``torch.load(weights_only=True)``: no arbitrary object is ever
  unpickled. Layout (a plain dict): ``format`` = :data:`FORMAT`, ``version`` = :data:`VERSION`,
  ``temporal_config`` / ``metadata`` as JSON strings, ``backbone`` str, ``temporal_state`` / ``backbone_state``
  ``{str: Tensor}`` (``backbone_state`` may be None).
* The baseline checkpoint (the frame baseline, which has no temporal model) is a sibling format
  (``format`` = :data:`BASELINE_FORMAT`): ``head_config`` / ``metadata`` JSON strings, ``backbone`` str,
  ``head_state`` / ``backbone_state`` tensor dicts. :func:`read_checkpoint` reads either kind.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mintime.fileio import atomic_write
from mintime.models.baseline import FrameBaseline
from mintime.models.temporal import MintimeTemporal, TemporalConfig

__all__ = [
    "FORMAT",
    "BASELINE_FORMAT",
    "VERSION",
    "CheckpointError",
    "ProjectCheckpoint",
    "BaselineCheckpoint",
    "read_checkpoint",
    "save_baseline_checkpoint",
    "read_state_dict",
    "load_state_dict_strict",
    "infer_original_config",
    "load_original_temporal",
    "save_checkpoint",
    "load_checkpoint",
]

logger = logging.getLogger(__name__)

#: Value of the ``format`` field of a project checkpoint.
FORMAT = "mintime-checkpoint"
#: Value of the ``format`` field of a baseline checkpoint.
BASELINE_FORMAT = "mintime-baseline-checkpoint"
#: Current (and highest readable) project checkpoint version.
VERSION = 1

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_LIST_LIMIT = 10


class CheckpointError(Exception):
    """A checkpoint file cannot be read, has the wrong format, or does not match the module."""


def _torch_load(path: str | Path) -> Any:
    """``torch.load(map_location='cpu', weights_only=True)`` with every failure turned into CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not _looks_like_torch_file(path):
        raise CheckpointError(
            f"{path} is not a torch checkpoint (neither the zip archive nor the pickle that torch.save writes)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses arbitrary objects (classes, functions): never fall back to full unpickling, and
        # never pass on torch's advice to do so
        logger.debug("%s: %s", path, exc)
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects other than tensors and plain containers, "
            "and only weights-only files are read (a checkpoint of `mintime train`, or the authors' state dicts)"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ModuleNotFoundError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {str(exc).splitlines()[0]}") from exc


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle (the legacy format starts with the pickle PROTO opcode)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _strip(key: str, strip_through: str | None) -> str:
    if strip_through and strip_through in key:
        key = key.split(strip_through, 1)[1]
    if key.startswith("module."):
        key = key[len("module.") :]
    return key


def read_state_dict(path: str | Path, *, strip_through: str | None = None) -> dict[str, Tensor]:
    """Read a state dict saved by ``torch.save``, safely, onto the CPU.

    Unwraps ``{'state_dict': ...}`` / ``{'model': ...}`` (and ``{'model_state_dict': ...}``) wrappers and strips a
    leading ``module.`` from every key.

    Args:
        path: the file.
        strip_through: if given (e.g. ``"efficient_net."``), keys containing it lose everything up to and
            including its first occurrence.

    Returns:
        ``{key: tensor}`` in file order.

    Raises:
        CheckpointError: unreadable file, non-tensor entries, or keys that collide after stripping.
    """
    obj = _torch_load(path)
    for _ in range(2):  # e.g. {'model': {'state_dict': ...}} is unusual, one nested level is accepted
        if isinstance(obj, Mapping):
            wrapper = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if wrapper is not None:
                obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (mapping of tensors), got {type(obj).__name__}")
    if isinstance(obj.get("format"), str) and obj.get("format") in (FORMAT, BASELINE_FORMAT):
        raise CheckpointError(
            f"{path} is a project checkpoint (from `mintime train`): give it with --checkpoint, not as the "
            "authors' --model-weights / --extractor-weights"
        )
    out: dict[str, Tensor] = OrderedDict()
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict, {len(bad)} non-tensor entries: {bad[:_LIST_LIMIT]}")
    for key, value in obj.items():
        new = _strip(key, strip_through)
        if new in out:
            raise CheckpointError(f"{path}: key {key!r} collides with another entry after prefix stripping")
        out[new] = value
    return out


def _listing(title: str, items: list[str]) -> str:
    more = f" ... (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
    return f"{len(items)} {title}: " + ", ".join(items[:_LIST_LIMIT]) + more


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, Tensor], *, what: str) -> None:
    """Load ``state_dict`` into ``module`` only if keys and shapes match exactly; never a partial load.

    Args:
        module: the target module.
        state_dict: ``{key: tensor}`` (already stripped of prefixes).
        what: a short description for the error message (e.g. the file name and the model).

    Raises:
        CheckpointError: naming the missing keys, unexpected keys and shape mismatches (first 10 of each
            plus the counts). The module is left untouched.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} (file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = [f"{what}: the state dict does not match {type(module).__name__}"]
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if mismatched:
            parts.append(_listing("shape mismatches", mismatched))
        raise CheckpointError("; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def infer_original_config(state_dict: Mapping[str, Tensor]) -> TemporalConfig:
    """The :class:`TemporalConfig` of an original ``SizeInvariantTimeSformer`` state dict.

    The preset comes from the patch-embedding input width (2048 = MINTIME-XC, 1280 = MINTIME-EF); the depth,
    the table sizes and the presence of ``size_emb`` are read from the keys.

    Raises:
        CheckpointError: no ``to_patch_embedding.weight``, or an unknown channel count.
    """
    weight = state_dict.get("to_patch_embedding.weight")
    if weight is None or weight.ndim != 2:
        raise CheckpointError("not a MINTIME temporal state dict: no 2-D 'to_patch_embedding.weight'")
    channels = int(weight.shape[1])
    presets = {2048: TemporalConfig.original_xc, 1280: TemporalConfig.original_ef}
    if channels not in presets:
        raise CheckpointError(
            f"to_patch_embedding takes {channels} channels; only 2048 (XC) and 1280 (EF) are known, "
            "pass an explicit TemporalConfig"
        )
    overrides: dict[str, Any] = {"enable_size_emb": "size_emb.weight" in state_dict}
    layer_ids = {
        int(k.split(".")[1]) for k in state_dict if k.startswith("layers.") and k.split(".")[1].isdigit()
    }
    if layer_ids:
        overrides["depth"] = max(layer_ids) + 1
    if "pos_emb.weight" in state_dict:
        overrides["pos_table_size"] = int(state_dict["pos_emb.weight"].shape[0])
    if "size_emb.weight" in state_dict:
        overrides["size_table_size"] = int(state_dict["size_emb.weight"].shape[0])
    return presets[channels](**overrides)


def load_original_temporal(path: str | Path, config: TemporalConfig | None = None) -> MintimeTemporal:
    """Build a :class:`MintimeTemporal` from the authors' model file (e.g. ``MINTIME_XC_Model_checkpoint30``).

    Args:
        path: the checkpoint (a plain state dict, ``module.``-prefixed or not).
        config: the architecture; None = inferred (:func:`infer_original_config`).

    Returns:
        The model in eval mode, on the CPU, float32.

    Raises:
        CheckpointError: unreadable file or any key/shape mismatch.
    """
    state = read_state_dict(path)
    config = config if config is not None else infer_original_config(state)
    model = MintimeTemporal(config)
    load_state_dict_strict(model, state, what=f"{path} (MINTIME temporal model)")
    logger.info("loaded the original temporal model from %s (%d tensors)", path, len(state))
    return model.eval()


@dataclass
class ProjectCheckpoint:
    """The content of a project checkpoint (see the module docstring for the file layout)."""

    temporal_config: dict[str, Any]
    temporal_state: dict[str, Tensor]
    backbone: str
    backbone_state: dict[str, Tensor] | None
    metadata: dict[str, Any] = field(default_factory=dict)

    kind = "mintime"

    def build_temporal(self, **kwargs: Any) -> MintimeTemporal:
        """A :class:`MintimeTemporal` with this checkpoint's config and weights, in eval mode."""
        model = MintimeTemporal(TemporalConfig.from_dict(self.temporal_config), **kwargs)
        load_state_dict_strict(model, self.temporal_state, what="project checkpoint (temporal model)")
        return model.eval()

    def build_head(self) -> MintimeTemporal:
        """The network after the backbone (here the temporal model), in eval mode."""
        return self.build_temporal()


@dataclass
class BaselineCheckpoint:
    """The content of a baseline checkpoint: frame baseline head + backbone."""

    head_config: dict[str, Any]
    head_state: dict[str, Tensor]
    backbone: str
    backbone_state: dict[str, Tensor] | None
    metadata: dict[str, Any] = field(default_factory=dict)

    kind = "baseline"

    def build_head(self) -> FrameBaseline:
        """The :class:`FrameBaseline` with this checkpoint's config and weights, in eval mode."""
        head = FrameBaseline(int(self.head_config["in_channels"]), hidden=int(self.head_config["hidden"]))
        load_state_dict_strict(head, self.head_state, what="baseline checkpoint (head)")
        return head.eval()


def _tensor_dict(state: Mapping[str, Tensor] | nn.Module, name: str) -> dict[str, Tensor]:
    if isinstance(state, nn.Module):
        state = state.state_dict()
    out: dict[str, Tensor] = OrderedDict()
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, Tensor):
            raise TypeError(f"{name}: expected {{str: Tensor}}, got entry {k!r}: {type(v).__name__}")
        out[k] = v.detach().cpu()
    return out


def save_checkpoint(
    path: str | Path,
    *,
    temporal_config: dict[str, Any],
    temporal_state: Mapping[str, Tensor] | nn.Module,
    backbone: str,
    backbone_state: Mapping[str, Tensor] | nn.Module | None,
    metadata: dict[str, Any],
) -> Path:
    """Write a project checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        path: destination file (its folder is created).
        temporal_config: ``TemporalConfig.to_dict()`` (must be JSON-serialisable).
        temporal_state: the temporal model's state dict (or the module itself).
        backbone: the backbone's registry name.
        backbone_state: the backbone's state dict (or module), None when the backbone is not stored.
        metadata: anything JSON-serialisable (epoch, metrics, data description, versions).

    Returns:
        The written path.
    """
    return _write(
        path,
        FORMAT,
        VERSION,
        config=("temporal_config", temporal_config),
        state=("temporal_state", temporal_state),
        backbone=(backbone, backbone_state),
        metadata=metadata,
    )


def _write(
    path: str | Path,
    fmt: str,
    version: int,
    *,
    config: tuple[str, dict[str, Any]],
    state: tuple[str, Mapping[str, Tensor] | nn.Module],
    backbone: tuple[str, Mapping[str, Tensor] | nn.Module | None],
    metadata: dict[str, Any],
) -> Path:
    """Write one checkpoint payload atomically: JSON strings and CPU tensor dicts only."""
    path = Path(path)
    name, backbone_state = backbone
    payload = {
        "format": fmt,
        "version": version,
        config[0]: json.dumps(config[1], sort_keys=True),
        "backbone": str(name),
        "metadata": json.dumps(metadata, sort_keys=True),
        state[0]: _tensor_dict(state[1], state[0]),
        "backbone_state": None if backbone_state is None else _tensor_dict(backbone_state, "backbone_state"),
    }
    with atomic_write(path) as fh:
        torch.save(payload, fh)
    logger.info("saved %s %s", fmt, path)
    return path


def save_baseline_checkpoint(
    path: str | Path,
    *,
    head_config: dict[str, Any],
    head_state: Mapping[str, Tensor] | nn.Module,
    backbone: str,
    backbone_state: Mapping[str, Tensor] | nn.Module | None,
    metadata: dict[str, Any],
) -> Path:
    """Write a baseline checkpoint atomically (layout in the module docstring).

    Args:
        path: destination file.
        head_config: ``{"in_channels": C, "hidden": H}`` of the :class:`FrameBaseline`.
        head_state: the head's state dict (or the module).
        backbone: the backbone's registry name.
        backbone_state: the backbone's state dict (or module), None when the backbone is not stored.
        metadata: anything JSON-serialisable.
    """
    return _write(
        path,
        BASELINE_FORMAT,
        1,
        config=("head_config", head_config),
        state=("head_state", head_state),
        backbone=(backbone, backbone_state),
        metadata=metadata,
    )


def read_checkpoint(path: str | Path) -> ProjectCheckpoint | BaselineCheckpoint:
    """Read a project checkpoint of either kind (MINTIME or baseline), ``weights_only``, on the CPU.

    Raises:
        CheckpointError: unreadable or unsafe file, neither kind, or malformed fields.
    """
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and obj.get("format") == BASELINE_FORMAT:
        try:
            head_config = json.loads(obj["head_config"])
            metadata = json.loads(obj["metadata"])
            backbone, head_state, backbone_state = obj["backbone"], obj["head_state"], obj["backbone_state"]
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: malformed baseline checkpoint: {exc!r}") from exc
        _check_states(path, "baseline", head_state=head_state, backbone_state=backbone_state)
        if not isinstance(backbone, str) or not isinstance(head_config, dict):
            raise CheckpointError(f"{path}: malformed baseline checkpoint (backbone or head_config)")
        return BaselineCheckpoint(
            head_config=head_config,
            head_state=dict(head_state),
            backbone=backbone,
            backbone_state=None if backbone_state is None else dict(backbone_state),
            metadata=metadata,
        )
    return _project_checkpoint(path, obj)


def _check_states(path: str | Path, what: str, **states: Any) -> None:
    for name, state in states.items():
        if state is None and name == "backbone_state":
            continue
        if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: malformed {what} checkpoint ({name} is not a tensor dict)")


def load_checkpoint(path: str | Path) -> ProjectCheckpoint:
    """Read a project checkpoint written by :func:`save_checkpoint` (``weights_only=True``, CPU).

    Raises:
        CheckpointError: unreadable or unsafe file, not a project checkpoint (e.g. a bare state dict such as
            the authors' files), an unsupported version, or malformed fields.
    """
    return _project_checkpoint(path, _torch_load(path))


def _project_checkpoint(path: str | Path, obj: Any) -> ProjectCheckpoint:
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        hint = ""
        if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
            hint = " (it looks like a bare state dict: use load_original_temporal / read_state_dict)"
        raise CheckpointError(f"{path}: not a MINTIME project checkpoint (no format={FORMAT!r} field){hint}")
    version = obj.get("version")
    if not isinstance(version, int) or not 1 <= version <= VERSION:
        raise CheckpointError(
            f"{path}: unsupported project checkpoint version {version!r} (this code reads 1..{VERSION})"
        )
    try:
        temporal_config = json.loads(obj["temporal_config"])
        metadata = json.loads(obj["metadata"])
        backbone = obj["backbone"]
        temporal_state = obj["temporal_state"]
        backbone_state = obj["backbone_state"]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: malformed project checkpoint: {exc!r}") from exc
    if not isinstance(backbone, str) or not isinstance(temporal_config, dict):
        raise CheckpointError(f"{path}: malformed project checkpoint (backbone or temporal_config)")
    _check_states(path, "project", temporal_state=temporal_state, backbone_state=backbone_state)
    return ProjectCheckpoint(
        temporal_config=temporal_config,
        temporal_state=dict(temporal_state),
        backbone=backbone,
        backbone_state=None if backbone_state is None else dict(backbone_state),
        metadata=metadata,
    )
