"""The MINTIME temporal model: a size-invariant, multi-identity divided space-time TimeSformer.

Input: backbone feature maps of ``F`` face slots, ``(B, F, C, 7, 7)``; each spatial position of each slot is a
token (``P = 49`` per slot, (slot, row, col) order), projected to ``dim`` and preceded by a learned CLS token.
A positional embedding (temporal-coherent ids from :mod:`mintime.slots`) and a face-size embedding are added,
then ``depth`` layers of [temporal attention, spatial attention, feed-forward] (pre-norm residuals) run, and
``LayerNorm + Linear(dim, 1)`` on the CLS token gives one logit per video.

The attribute names reproduce the original ``SizeInvariantTimeSformer`` so that the authors' checkpoints load
strictly (see :mod:`mintime.checkpoints`). :meth:`TemporalConfig.original_xc` / :meth:`TemporalConfig.original_ef`
give the exact shapes of the published files, including their oversized embedding tables
(``num_frames * channels + 1`` rows, of which only the first 785 / 21 are used).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mintime.models.layers.attention import ATTENTION_IMPLS, Attention, AttentionImpl, FeedForward, PreNorm

__all__ = ["TemporalConfig", "MintimeTemporal", "NUM_SIZE_IDS"]

logger = logging.getLogger(__name__)

#: Size ids 1..20 (5 %-area buckets) plus 0 for CLS / dummy slots.
NUM_SIZE_IDS = 21


@dataclass
class TemporalConfig:
    """Hyper-parameters of :class:`MintimeTemporal` (everything that fixes the state-dict shapes).

    Attributes:
        dim: transformer width.
        depth: number of [time, space, feed-forward] layers.
        heads: attention heads.
        dim_head: size of each head (``heads * dim_head`` is the attention inner width).
        channels: backbone feature channels ``C`` (input of the patch projection).
        num_frames: face slots ``F``.
        num_patches: tokens per slot ``P`` (7x7 feature map = 49).
        attn_dropout: dropout after each attention's output projection.
        ff_dropout: dropout inside the feed-forward.
        enable_size_emb: add the face-size embedding (``size_emb`` exists only when True).
        enable_pos_emb: use the given temporal-coherent positions; False = plain ``0..F*P``.
        pos_table_size: rows of ``pos_emb``; None = ``1 + F*P`` (the original files: ``F*C + 1``).
        size_table_size: rows of ``size_emb``; None = 21 (the original files: ``F*C + 1``).
    """

    dim: int = 512
    depth: int = 9
    heads: int = 8
    dim_head: int = 64
    channels: int = 1280
    num_frames: int = 16
    num_patches: int = 49
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0
    enable_size_emb: bool = True
    enable_pos_emb: bool = True
    pos_table_size: int | None = None
    size_table_size: int | None = None

    @property
    def num_tokens(self) -> int:
        """``1 + num_frames * num_patches`` (CLS first)."""
        return 1 + self.num_frames * self.num_patches

    @property
    def pos_rows(self) -> int:
        """Rows of the positional table actually built."""
        return self.num_tokens if self.pos_table_size is None else self.pos_table_size

    @property
    def size_rows(self) -> int:
        """Rows of the size table actually built."""
        return NUM_SIZE_IDS if self.size_table_size is None else self.size_table_size

    def validate(self) -> None:
        """Raise ValueError for a config that cannot work (tables too small, non-positive sizes)."""
        for name in ("dim", "depth", "heads", "dim_head", "channels", "num_frames", "num_patches"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TemporalConfig.{name} must be positive, got {getattr(self, name)}")
        if self.pos_rows < self.num_tokens:
            raise ValueError(f"pos_table_size {self.pos_rows} < number of tokens {self.num_tokens}")
        if self.enable_size_emb and self.size_rows < NUM_SIZE_IDS:
            raise ValueError(f"size_table_size {self.size_rows} < {NUM_SIZE_IDS} size ids")

    @classmethod
    def original_xc(cls, **overrides: Any) -> TemporalConfig:
        """MINTIME-XC as published (Xception features, 2048 channels, tables of 32,769 rows)."""
        base = cls(channels=2048, pos_table_size=16 * 2048 + 1, size_table_size=16 * 2048 + 1)
        return dataclasses.replace(base, **overrides)

    @classmethod
    def original_ef(cls, **overrides: Any) -> TemporalConfig:
        """MINTIME-EF as published (EfficientNet-B0 features, 1280 channels, tables of 20,481 rows)."""
        base = cls(channels=1280, pos_table_size=16 * 1280 + 1, size_table_size=16 * 1280 + 1)
        return dataclasses.replace(base, **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> TemporalConfig:
        """A small model for tests and smoke runs (dim 64, depth 2, 2 heads of 32, 64 channels)."""
        base = cls(dim=64, depth=2, heads=2, dim_head=32, channels=64)
        return dataclasses.replace(base, **overrides)

    @classmethod
    def small(cls, **overrides: Any) -> TemporalConfig:
        """A lighter model for training from scratch on little data (dim 256, depth 4, 4 heads of 64)."""
        base = cls(dim=256, depth=4, heads=4, dim_head=64)
        return dataclasses.replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemporalConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError (they mean a newer or foreign config)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TemporalConfig fields: {unknown}")
        return cls(**data)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)


class MintimeTemporal(nn.Module):
    """Size-invariant multi-identity TimeSformer over backbone features.

    Args:
        config: the hyper-parameters (see :class:`TemporalConfig`).
        attn_impl: ``"sdpa"`` (default) or ``"eager"``; switch later with :meth:`set_attention_impl`.
    """

    def __init__(self, config: TemporalConfig, *, attn_impl: AttentionImpl = "sdpa") -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        self.cls_token = nn.Parameter(torch.zeros(1, c.dim))
        self.to_patch_embedding = nn.Linear(c.channels, c.dim)
        self.pos_emb = nn.Embedding(c.pos_rows, c.dim)
        if c.enable_size_emb:
            self.size_emb = nn.Embedding(c.size_rows, c.dim)
        common = dict(
            num_frames=c.num_frames,
            num_patches=c.num_patches,
            heads=c.heads,
            dim_head=c.dim_head,
            dropout=c.attn_dropout,
            impl=attn_impl,
        )
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(c.dim, Attention(c.dim, axis="time", **common)),
                    PreNorm(c.dim, Attention(c.dim, axis="space", **common)),
                    PreNorm(c.dim, FeedForward(c.dim, dropout=c.ff_dropout)),
                ]
            )
            for _ in range(c.depth)
        )
        self.to_out = nn.Sequential(nn.LayerNorm(c.dim), nn.Linear(c.dim, 1))
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    @property
    def attn_impl(self) -> str:
        """The attention implementation in use (``"sdpa"`` or ``"eager"``)."""
        return self.layers[0][0].fn.impl

    def set_attention_impl(self, impl: AttentionImpl) -> MintimeTemporal:
        """Switch every attention module to ``impl`` (``"sdpa"`` or ``"eager"``); returns self."""
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"unknown attention implementation {impl!r}; expected one of {ATTENTION_IMPLS}")
        for module in self.modules():
            if isinstance(module, Attention):
                module.impl = impl
        return self

    def _check_inputs(
        self, features: Tensor, mask: Tensor, identities_mask: Tensor, size_ids: Tensor, positions: Tensor
    ) -> None:
        c = self.config
        f, p = c.num_frames, c.num_patches
        b = features.shape[0]
        expected = {
            "features": ((b, f, c.channels, features.shape[3], features.shape[4]), features),
            "mask": ((b, f), mask),
            "identities_mask": ((b, f, f), identities_mask),
            "size_ids": ((b, f), size_ids),
            "positions": ((b, 1 + f * p), positions),
        }
        for name, (shape, t) in expected.items():
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
        if features.shape[3] * features.shape[4] != p:
            raise ValueError(f"features map {tuple(features.shape[3:])} does not give {p} patches")
        if mask.dtype != torch.bool or identities_mask.dtype != torch.bool:
            raise ValueError("mask and identities_mask must be bool tensors")

    def forward(
        self,
        features: Tensor,
        mask: Tensor,
        identities_mask: Tensor,
        size_ids: Tensor,
        positions: Tensor,
        *,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Score a batch of videos.

        Args:
            features: ``(B, F, C, 7, 7)`` float backbone features (model dtype).
            mask: ``(B, F)`` bool, True = real face slot (False = dummy, hidden from CLS and temporal keys).
            identities_mask: ``(B, F, F)`` bool, ``[b, i, j]`` True when slots i and j hold the same identity.
            size_ids: ``(B, F)`` int64 size bucket 1..20 (0 = dummy).
            positions: ``(B, 1 + F*P)`` int64 temporal-coherent position ids (0 = CLS); ignored when
                ``enable_pos_emb`` is False (then ``0..F*P`` is used).
            return_attention: also return the last layer's CLS attention rows.

        Returns:
            ``logits`` ``(B, 1)`` float, or ``(logits, cls_attention)`` with ``cls_attention``
            ``(B, 2, heads, 1 + F*P)``: index 0 = spatial, 1 = temporal attention of the last layer.
        """
        c = self.config
        f, p, n = c.num_frames, c.num_patches, c.num_tokens
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            self._check_inputs(features, mask, identities_mask, size_ids, positions)

        # tokens in (slot, row, col) order, projected, CLS prepended
        tokens = features.permute(0, 1, 3, 4, 2).reshape(-1, f * p, c.channels)
        x = self.to_patch_embedding(tokens)
        cls = self.cls_token.to(x.dtype)[None].expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)  # (B, N, dim)

        if c.enable_pos_emb:
            x = x + self.pos_emb(positions)
        else:
            x = x + self.pos_emb(torch.arange(n, device=x.device))[None]
        if c.enable_size_emb:
            token_sizes = size_ids[:, :, None].expand(-1, -1, p).reshape(-1, f * p)
            token_sizes = torch.cat((torch.zeros_like(token_sizes[:, :1]), token_sizes), dim=1)
            x = x + self.size_emb(token_sizes)

        # masks: True = may attend; the CLS key is always visible
        visible = torch.ones_like(mask[:, :1])
        cls_mask = torch.cat(
            (visible, mask[:, :, None].expand(-1, -1, p).reshape(-1, f * p)), dim=1
        )  # (B, N)
        same_identity = mask[:, None, :] & identities_mask  # (B, F, F): query slot i, key slot j
        time_mask = torch.cat((visible[:, :, None].expand(-1, f, -1), same_identity), dim=2)  # (B, F, 1+F)

        attn_time = attn_space = x.new_zeros(())
        for time_block, space_block, ff_block in self.layers:
            y, attn_time = time_block(x, cls_mask=cls_mask, time_mask=time_mask)
            x = x + y
            y, attn_space = space_block(x, cls_mask=cls_mask)
            x = x + y
            x = x + ff_block(x)

        logits = self.to_out(x[:, 0])
        if return_attention:
            return logits, torch.stack((attn_space, attn_time), dim=1)
        return logits
