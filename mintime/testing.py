"""Helpers for tests: rebuild the parity state dicts from their key manifests.

The parity fixtures (``../shared/fixtures/parity/``) hold no weights: every tensor of the original networks is a
deterministic function of its state-dict key (the recipe of the fixtures' README), so a state dict can be rebuilt
from the ``[key, shape, dtype]`` manifest and loaded into this project's modules.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["recipe_tensor", "rebuild_from_manifest"]


def recipe_tensor(key: str, shape: tuple[int, ...] | list[int], dtype: torch.dtype) -> Tensor:
    """The fixtures' deterministic tensor for one state-dict key.

    Args:
        key: the state-dict key as written in the manifest (it seeds the generator, via CRC32).
        shape: the tensor shape.
        dtype: the tensor dtype; integer dtypes give zeros.

    Returns:
        A CPU tensor of ``shape`` and ``dtype``.
    """
    shape = tuple(int(s) for s in shape)
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    g = torch.Generator(device="cpu")
    g.manual_seed(zlib.crc32(key.encode()))
    if key.endswith("running_var"):
        t = 0.5 + torch.rand(shape, generator=g)
    elif key.endswith("running_mean"):
        t = 0.1 * torch.randn(shape, generator=g)
    elif len(shape) == 1 and key.endswith("weight"):
        t = 1.0 + 0.1 * torch.randn(shape, generator=g)
    elif len(shape) == 1:
        t = 0.1 * torch.randn(shape, generator=g)
    else:
        t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    return t.to(dtype)


def rebuild_from_manifest(keys_json_path: str | Path) -> dict[str, Tensor]:
    """Rebuild a whole state dict from a ``*_keys.json`` manifest (list of ``[key, shape, dtype]``).

    Args:
        keys_json_path: path of the manifest.

    Returns:
        An ordered ``{key: tensor}`` dict in manifest order (keys as in the manifest, no ``module.`` prefix).
    """
    entries = json.loads(Path(keys_json_path).read_text())
    out: dict[str, Tensor] = OrderedDict()
    for key, shape, dtype_name in entries:
        dtype = getattr(torch, str(dtype_name).removeprefix("torch."))
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{keys_json_path}: unknown dtype {dtype_name!r} for {key}")
        out[key] = recipe_tensor(key, shape, dtype)
    return out
