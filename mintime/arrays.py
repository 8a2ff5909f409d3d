"""Arrays that may live on the host (numpy) or on a GPU (torch, handed over by DLPack): the few helpers that let
the Triton models and the engines pass tensors on without a host round trip. Imports torch only for torch inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_torch", "host", "concatenate", "contiguous", "torch_uint8"]


def is_torch(x: Any) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return type(x).__module__.startswith("torch")


def host(x: Any) -> np.ndarray:
    """A numpy array of ``x`` (a torch tensor is copied to the host; numpy passes through)."""
    return x.detach().cpu().numpy() if is_torch(x) else np.asarray(x)


def concatenate(parts: list[Any]) -> Any:
    """Concatenate along the first axis: with torch on the tensors' device when any part is a torch tensor, else
    with numpy."""
    if any(is_torch(p) for p in parts):
        import torch

        device = next(p.device for p in parts if is_torch(p))
        return torch.cat(
            [p.to(device) if is_torch(p) else torch.from_numpy(np.asarray(p)).to(device) for p in parts]
        )
    return np.concatenate(parts, axis=0)


def contiguous(x: Any) -> Any:
    """A contiguous copy or view of a numpy array or torch tensor."""
    return x.contiguous() if is_torch(x) else np.ascontiguousarray(x)


def torch_uint8() -> Any:
    """``torch.uint8`` (imported on demand)."""
    import torch

    return torch.uint8
