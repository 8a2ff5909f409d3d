"""Divided space-time attention with a global CLS token, pre-norm wrapper and GEGLU feed-forward.

The parameter names reproduce the state-dict keys of the original MINTIME ``SizeInvariantTimeSformer``
(lucidrains TimeSformer layout): ``to_qkv`` (no bias), ``to_out.0`` (Linear) + ``to_out.1`` (Dropout);
feed-forward ``net.0`` (Linear), GEGLU, Dropout, ``net.3`` (Linear); pre-norm ``fn`` + ``norm``.

Token layout: ``x`` is ``(B, 1 + F*P, dim)`` with the CLS token first, then the ``F*P`` tokens in
(slot, row, col) order. Per attention module:

* the **CLS query** attends all ``1 + F*P`` keys; ``cls_mask`` hides the tokens of masked slots (the CLS key
  itself is always visible). Its attention row is returned (``(B, heads, 1 + F*P)``).
* the **token queries** attend, in a *temporal* module, the tokens at the same patch position in every slot
  plus the CLS key, restricted by ``time_mask`` (key slot unmasked and of the same identity); in a *spatial*
  module, the ``P`` tokens of their own slot plus the CLS key, without a mask.

Two numerically equivalent implementations: ``"sdpa"`` (``torch.nn.functional.scaled_dot_product_attention``
with boolean masks, the default) and ``"eager"`` (explicit softmax, the reference and benchmark baseline).
Masks are boolean, True = may attend. No row is ever fully masked because the CLS key is always visible.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentionImpl",
    "ATTENTION_IMPLS",
    "PreNorm",
    "GEGLU",
    "FeedForward",
    "Attention",
    "attend",
]

logger = logging.getLogger(__name__)

AttentionImpl = Literal["sdpa", "eager"]
ATTENTION_IMPLS: tuple[str, ...] = ("sdpa", "eager")


def _check_impl(impl: str) -> str:
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"unknown attention implementation {impl!r}; expected one of {ATTENTION_IMPLS}")
    return impl


def _masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last axis with masked entries filled by the dtype's lowest finite value.

    Args:
        scores: ``(..., Lq, Lk)`` float scores (any float dtype).
        mask: boolean, broadcastable to ``scores``, True = keep; None = no mask.

    Returns:
        Probabilities, same shape and dtype as ``scores`` (the softmax itself runs in float32).
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1, dtype=torch.float32).to(scores.dtype)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *, scale: float, impl: str) -> Tensor:
    """Scaled dot-product attention, ``sdpa`` or ``eager``.

    Args:
        q: ``(B, G, Lq, D)`` queries (not yet scaled).
        k: ``(B, G, Lk, D)`` keys.
        v: ``(B, G, Lk, D)`` values.
        mask: boolean ``(B or 1, G or 1, Lq or 1, Lk)``, True = may attend; None = attend everything.
        scale: the factor applied to ``q`` (``dim_head ** -0.5``).
        impl: ``"sdpa"`` or ``"eager"``.

    Returns:
        ``(B, G, Lq, D)``, same dtype as ``q``.
    """
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    scores = torch.matmul(q * scale, k.transpose(-1, -2))
    return torch.matmul(_masked_softmax(scores, mask), v)


class PreNorm(nn.Module):
    """``fn(LayerNorm(x), **kwargs)``; the residual is added by the caller.

    Args:
        dim: feature size of ``x`` (last axis).
        fn: the wrapped module.
    """

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        # registration order (fn, then norm) matches the original state-dict order
        self.fn = fn
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, **kwargs: Any) -> Any:
        """x: ``(B, N, dim)`` → whatever ``fn`` returns."""
        return self.fn(self.norm(x), **kwargs)


class GEGLU(nn.Module):
    """Gated GELU: splits the last axis in two halves (value, gate) and returns ``value * gelu(gate)``."""

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(..., 2*h)`` → ``(..., h)``."""
        value, gate = x.chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """``Linear(dim, 2*mult*dim) → GEGLU → Dropout → Linear(mult*dim, dim)`` as ``net.0 .. net.3``.

    Args:
        dim: model width.
        mult: hidden expansion (the original uses 4).
        dropout: dropout probability after the GEGLU.
    """

    def __init__(self, dim: int, *, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult * 2),
            GEGLU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, N, dim)`` → ``(B, N, dim)``."""
        return self.net(x)


class Attention(nn.Module):
    """Multi-head divided attention over ``1 + num_frames * num_patches`` tokens (CLS first).

    Args:
        dim: model width.
        axis: ``"time"`` (token queries attend the same patch position across slots, masked by
            ``time_mask``) or ``"space"`` (token queries attend their own slot's patches, no mask).
        num_frames: number of slots ``F``.
        num_patches: tokens per slot ``P``.
        heads: number of heads.
        dim_head: size of each head.
        dropout: dropout after the output projection (``to_out.1``).
        impl: ``"sdpa"`` or ``"eager"``; may be changed later through the ``impl`` attribute.
    """

    def __init__(
        self,
        dim: int,
        *,
        axis: Literal["time", "space"],
        num_frames: int,
        num_patches: int,
        heads: int,
        dim_head: int,
        dropout: float = 0.0,
        impl: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__()
        if axis not in ("time", "space"):
            raise ValueError(f"axis must be 'time' or 'space', got {axis!r}")
        inner = heads * dim_head
        self.axis = axis
        self.num_frames = num_frames
        self.num_patches = num_patches
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head**-0.5
        self.impl = _check_impl(impl)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def extra_repr(self) -> str:
        return f"axis={self.axis}, heads={self.heads}, dim_head={self.dim_head}, impl={self.impl}"

    def forward(
        self, x: Tensor, *, cls_mask: Tensor, time_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Attend.

        Args:
            x: ``(B, 1 + F*P, dim)`` normalised tokens, CLS first.
            cls_mask: ``(B, 1 + F*P)`` bool, True = key visible to the CLS query (index 0 must be True).
            time_mask: ``(B, F, 1 + F)`` bool, for ``axis="time"``: entry ``[i, 0]`` is the CLS key, entry
                ``[i, 1 + j]`` says whether slot ``i`` may attend slot ``j``. Ignored by ``axis="space"``.

        Returns:
            ``(out, cls_attention)``: ``out`` ``(B, 1 + F*P, dim)`` (before the residual) and the CLS query's
            attention row ``(B, heads, 1 + F*P)`` (probabilities over the keys).
        """
        h, d, f, p = self.heads, self.dim_head, self.num_frames, self.num_patches
        n = 1 + f * p
        qkv = self.to_qkv(x).reshape(-1, n, 3, h, d).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        q, k, v = qkv[0], qkv[1], qkv[2]

        # 1. the CLS query over all keys, explicit so that its attention row is available
        cls_scores = torch.matmul(q[:, :, :1] * self.scale, k.transpose(-1, -2))  # (B, h, 1, N)
        cls_attn = _masked_softmax(cls_scores, cls_mask[:, None, None, :])
        cls_out = torch.matmul(cls_attn, v)  # (B, h, 1, d)

        # 2. the token queries, regrouped into sequences that each get the CLS key/value prepended
        qt, kt, vt = q[:, :, 1:], k[:, :, 1:], v[:, :, 1:]  # (B, h, F*P, d)
        k_cls, v_cls = k[:, :, :1], v[:, :, :1]  # (B, h, 1, d)
        if self.axis == "time":
            if time_mask is None:
                raise ValueError("temporal attention needs time_mask")
            # (B, h, F*P, d) -> (B, h*P, F, d): one sequence per (head, patch position)
            qs, ks, vs = (
                t.reshape(-1, h, f, p, d).transpose(2, 3).reshape(-1, h * p, f, d) for t in (qt, kt, vt)
            )
            groups = p
            mask: Tensor | None = time_mask[:, None]  # (B, 1, F, 1+F)
        else:
            # (B, h, F*P, d) -> (B, h*F, P, d): one sequence per (head, slot)
            qs, ks, vs = (t.reshape(-1, h * f, p, d) for t in (qt, kt, vt))
            groups = f
            mask = None
        k_cls = k_cls[:, :, None].expand(-1, -1, groups, -1, -1).reshape(-1, h * groups, 1, d)
        v_cls = v_cls[:, :, None].expand(-1, -1, groups, -1, -1).reshape(-1, h * groups, 1, d)
        ks = torch.cat((k_cls, ks), dim=2)
        vs = torch.cat((v_cls, vs), dim=2)
        out = attend(qs, ks, vs, mask, scale=self.scale, impl=self.impl)
        if self.axis == "time":
            out = out.reshape(-1, h, p, f, d).transpose(2, 3).reshape(-1, h, f * p, d)
        else:
            out = out.reshape(-1, h, f * p, d)

        # 3. merge CLS and tokens, then heads
        out = torch.cat((cls_out, out), dim=2).transpose(1, 2).reshape(-1, n, h * d)
        return self.to_out(out), cls_attn[:, :, 0]
