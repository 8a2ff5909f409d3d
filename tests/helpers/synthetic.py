"""Helpers for tests and benchmarks: rebuild the parity state dicts, synthetic temporal-model inputs.

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

__all__ = ["recipe_tensor", "rebuild_from_manifest", "two_identity_inputs"]


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


def two_identity_inputs(
    batch: int, channels: int = 64, seed: int = 0, *, num_slots: int = 16, num_patches: int = 49
) -> tuple[Tensor, ...]:
    """Temporal-model inputs of a two-identity video: 6 + 6 real slots, then 4 masked dummies of identity 1.

    Returns:
        features (B, F, C, 7, 7) float32 random, mask (B, F) bool, identities_mask (B, F, F) bool,
        size_ids (B, F) int64 (1..20 on real slots, 0 on dummies), positions (B, 1+F*P) int64 (frame ranks
        0..5 per identity, dummies at rank 5, CLS 0).
    """
    f, p = num_slots, num_patches
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, f, channels, 7, 7, generator=g)
    mask = torch.ones(batch, f, dtype=torch.bool)
    mask[:, 12:] = False
    ident = torch.tensor([0] * 6 + [1] * (f - 6))
    identities_mask = (ident[:, None] == ident[None, :]).expand(batch, f, f).clone()
    size_ids = torch.randint(1, 21, (batch, f), generator=g)
    size_ids[:, 12:] = 0
    rank = torch.tensor(list(range(6)) * 2 + [5] * (f - 12))
    positions = torch.cat(
        [torch.zeros(1, dtype=torch.long), (rank[:, None] * p + torch.arange(p) + 1).reshape(-1)]
    )
    return features, mask, identities_mask, size_ids, positions.expand(batch, -1).clone()
