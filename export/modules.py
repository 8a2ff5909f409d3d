"""The exact modules that become the ``backbone`` and ``temporal`` engines, and example inputs for them.

* backbone: :class:`mintime.models.backbones.SlotBackbone`: ``face_slots_faces`` (B, 16, 3, 224, 224) float32
  → ``backbone_features`` (B, 16, C, 7, 7) float32
* temporal: :class:`TemporalExport`: the five slot tensors → ``temporal_logit`` (B, 1) float32 and
  ``temporal_cls_attention`` (B, 2, heads, 785) float32
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mintime import contract

__all__ = [
    "NETWORKS",
    "TemporalExport",
    "HalfPrecision",
    "export_module",
    "io_names",
    "dynamic_batch_axes",
    "example_inputs",
]

NETWORKS = tuple(contract.NETWORKS)
_SPECS = contract.NETWORKS


class TemporalExport(nn.Module):
    """``MintimeTemporal`` with ``return_attention=True`` and plain positional inputs (what ONNX traces)."""

    def __init__(self, temporal: nn.Module) -> None:
        super().__init__()
        self.temporal = temporal

    def forward(
        self, features: Tensor, mask: Tensor, identities_mask: Tensor, size_ids: Tensor, positions: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(B,16,C,7,7) f32, (B,16) bool, (B,16,16) bool, (B,16) i64, (B,785) i64 → (B,1) f32, (B,2,h,785) f32."""
        return self.temporal(features, mask, identities_mask, size_ids, positions, return_attention=True)


class HalfPrecision(nn.Module):
    """Runs a module in fp16 with float32 I/O (floating inputs cast to half, outputs back to float32)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.half()

    def forward(self, *inputs: Tensor) -> Any:
        cast = [x.half() if x.is_floating_point() else x for x in inputs]
        out = self.module(*cast)
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


def export_module(which: str, loaded: Any) -> nn.Module:
    """The module to export for ``which`` of :class:`mintime.networks.Networks` (eval mode).

    Export runs on the CPU. The temporal model uses the ``eager`` attention (explicit matmul + softmax: what
    TensorRT parses best).
    """
    from mintime.models.backbones.base import SlotBackbone

    if which == "backbone":
        b = loaded.backbone
        return (b if isinstance(b, SlotBackbone) else SlotBackbone(b)).cpu().eval()
    if which == "temporal":
        temporal = loaded.temporal
        if hasattr(temporal, "set_attention_impl"):
            temporal.set_attention_impl("eager")
        return TemporalExport(temporal).cpu().eval()
    raise ValueError(f"unknown network {which!r}; expected one of {NETWORKS}")


def io_names(which: str) -> tuple[list[str], list[str]]:
    """(input names, output names) of a network, from :mod:`mintime.contract`."""
    spec = _SPECS[which]
    return [t.name for t in spec.inputs], [t.name for t in spec.outputs]


def dynamic_batch_axes(which: str) -> dict[str, dict[int, str]]:
    """``dynamic_axes`` for ``torch.onnx.export``: axis 0 of every input and output is ``batch``."""
    inputs, outputs = io_names(which)
    return {name: {0: "batch"} for name in inputs + outputs}


def example_inputs(
    which: str,
    batch: int,
    *,
    channels: int = contract.DEFAULT_CHANNELS,
    seed: int = 0,
    num_slots: int = contract.NUM_SLOTS,
) -> tuple[Tensor, ...]:
    """Plausible inputs for a network (a fixed seed per call, so the checks are reproducible).

    Args:
        which: ``"backbone"`` or ``"temporal"``.
        batch: videos ``B``.
        channels: backbone channels ``C`` (temporal only).
        seed: random seed.
        num_slots: face slots ``F`` (the model's: 8 for a ``tiny`` training checkpoint).

    Returns:
        backbone: ``(faces,)`` (B, 16, 3, 224, 224) float32 in 0..255.
        temporal: ``(features, mask, identities_mask, size_ids, positions)``: real slots first, one or two
        identities, size ids 1..20 on real slots, positions ``0..784`` (CLS = 0).
    """
    g = torch.Generator().manual_seed(seed)
    f, p, s = int(num_slots), contract.NUM_PATCHES, contract.IMAGE_SIZE
    if which == "backbone":
        return (torch.rand(batch, f, 3, s, s, generator=g) * 255.0,)
    if which != "temporal":
        raise ValueError(f"unknown network {which!r}; expected one of {NETWORKS}")
    rng = np.random.default_rng(seed)
    features = torch.randn(
        batch, f, channels, contract.FEATURE_SIZE, contract.FEATURE_SIZE, generator=g
    ).abs()
    mask = np.zeros((batch, f), bool)
    identities_mask = np.zeros((batch, f, f), bool)
    size_ids = np.zeros((batch, f), np.int64)
    for b in range(batch):
        real = int(rng.integers(2, f + 1))
        ident = np.arange(f) % int(rng.integers(1, 3))
        mask[b, :real] = True
        identities_mask[b] = ident[:, None] == ident[None, :]
        size_ids[b, :real] = rng.integers(1, 21, size=real)
    positions = np.tile(np.arange(1 + f * p, dtype=np.int64), (batch, 1))
    return (
        features,
        torch.from_numpy(mask),
        torch.from_numpy(identities_mask),
        torch.from_numpy(size_ids),
        torch.from_numpy(positions),
    )
