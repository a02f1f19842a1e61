"""How image features enter the denoiser: cross-attention, concatenation, or not at all.

- ``cross_attention`` (the paper's design): the signal's features at every resolution
  attend to a context sequence made of the CLIP visual tokens plus the pooled embedding.
- ``concat`` (the paper's ablation): the pooled embedding is projected to a few feature
  maps, broadcast over time and concatenated to the network input.
- ``none``: unconditional.

Classifier-free guidance needs the same network to run without a condition: each
mechanism owns a learned *null* condition that replaces the real one wherever
``drop_cond`` is true (during training at random, at sampling for the unconditional pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CONDITIONINGS = ("cross_attention", "concat", "none")


@dataclass
class Condition:
    """Image features for a batch.

    Attributes
    ----------
    pooled : Tensor, shape (batch, embed_dim)
        CLIP image embedding.
    tokens : Tensor, shape (batch, n_tokens, token_dim)
        CLIP visual token sequence (may be empty along n_tokens for concat/none).
    """

    pooled: torch.Tensor
    tokens: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Condition":
        return Condition(self.pooled.to(device, dtype), self.tokens.to(device, dtype))

    def index(self, idx) -> "Condition":
        return Condition(self.pooled[idx], self.tokens[idx])

    def repeat(self, n: int) -> "Condition":
        """Each item repeated ``n`` times consecutively (for several samples per image)."""
        return Condition(self.pooled.repeat_interleave(n, 0), self.tokens.repeat_interleave(n, 0))

    def __len__(self) -> int:
        return self.pooled.shape[0]


def check_conditioning(name: str) -> str:
    if name not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got '{name}'")
    return name


def _drop(real: torch.Tensor, null: torch.Tensor, drop_cond: torch.Tensor | None) -> torch.Tensor:
    """Replace the rows of ``real`` where ``drop_cond`` is true by the learned null."""
    if drop_cond is None:
        return real
    mask = drop_cond.view(-1, *([1] * (real.dim() - 1))).to(real.device)
    return torch.where(mask, null.expand_as(real).to(real.dtype), real)


class ContextEncoder(nn.Module):
    """CLIP tokens + pooled embedding → context sequence ``(batch, n_tokens + 1, dim)``."""

    def __init__(self, embed_dim: int, token_dim: int, dim: int, n_tokens: int):
        super().__init__()
        self.token_proj = nn.Sequential(nn.LayerNorm(token_dim), nn.Linear(token_dim, dim))
        self.pooled_proj = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, dim))
        # Learned positions: the token order is the image's patch grid.
        self.position = nn.Parameter(torch.zeros(1, n_tokens + 1, dim))
        self.null = nn.Parameter(torch.zeros(1, n_tokens + 1, dim))
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.null, std=0.02)

    def forward(self, cond: Condition, drop_cond: torch.Tensor | None) -> torch.Tensor:
        tokens = self.token_proj(cond.tokens)
        pooled = self.pooled_proj(cond.pooled)[:, None]
        context = torch.cat([pooled, tokens], dim=1) + self.position
        return _drop(context, self.null, drop_cond)


class ConcatEncoder(nn.Module):
    """Pooled embedding → ``n_maps`` constant feature maps to concatenate to the input."""

    def __init__(self, embed_dim: int, n_maps: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, n_maps * 2),
                                  nn.SiLU(), nn.Linear(n_maps * 2, n_maps))
        self.null = nn.Parameter(torch.zeros(1, n_maps))

    def forward(self, cond: Condition, drop_cond: torch.Tensor | None, n_times: int) -> torch.Tensor:
        maps = _drop(self.proj(cond.pooled), self.null, drop_cond)
        return maps[:, :, None].expand(-1, -1, n_times)


class CrossAttention(nn.Module):
    """Signal features (queries) attend to the image context (keys/values), residually."""

    def __init__(self, channels: int, context_dim: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=context_dim, vdim=context_dim,
                                          batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)  # start as identity: training stays stable
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self.norm(x).transpose(1, 2)  # (batch, time, channels)
        out, _ = self.attn(q, context, context, need_weights=False)
        return x + out.transpose(1, 2)
