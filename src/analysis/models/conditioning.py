"""How image features enter the denoiser: cross-attention, concatenation, or not at all.

- ``cross_attention`` (the paper's design): the signal's features at every resolution
  attend to a context sequence made of the CLIP visual tokens plus the pooled embedding.
- ``concat`` (the paper's ablation): the pooled embedding is projected to a few feature
  maps, broadcast over time and concatenated to the network input.
- ``film`` (the capacity control): the pooled embedding is projected into the timestep
  embedding, so it scales and shifts every residual block at every level — as often as
  cross-attention injects the condition, with a path of similar size, but without the
  tokens. ``cross_attention`` vs ``film`` measures what the tokens add; ``film`` vs
  ``concat`` what injecting at every level adds.
- ``none``: unconditional.

Classifier-free guidance needs the same network to run without a condition: each
mechanism owns a learned *null* condition that replaces the real one wherever
``drop_cond`` is true (during training at random, at sampling for the unconditional pass).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CONDITIONINGS


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


#: Images whose tokens :class:`FeatureScaler` handles at a time when it fits statistics and
#: principal axes (in float64) or projects: a z-scored float copy of every token is never
#: made at once (THINGS-MEG: 22 k images × 49 tokens × 1776 dimensions, 7.7 GB as float32).
CHUNK_IMAGES = 256


@dataclass
class FeatureScaler:
    """Z-score image features with training-image statistics (per feature dimension), and
    optionally keep their leading principal components.

    CLIP features share a large common component across images (with random-init weights
    the across-image spread of the pooled embedding is ~1/4 of its norm, and the patch
    tokens carry their position embedding); per-sample LayerNorm keeps it. Removing it and
    equalising the dimensions, as :class:`~analysis.models.baselines.RidgeEncoder` does with
    ``StandardScaler``, lets the network see what distinguishes images from the first step
    (on the default simulated dataset a denoiser trained as a pure regressor reaches in one
    epoch what it reached in six without it).

    ``tokens`` statistics are per (token position, dimension). ``pooled_basis`` and
    ``tokens_basis`` (``None``: all dimensions kept) project the z-scored features onto
    their leading principal axes on the training images (tokens: over all positions), shape
    (n_dims, n_components).
    """

    pooled_mean: torch.Tensor
    pooled_std: torch.Tensor
    tokens_mean: torch.Tensor
    tokens_std: torch.Tensor
    pooled_basis: torch.Tensor | None = None
    tokens_basis: torch.Tensor | None = None

    @classmethod
    def fit(cls, cond: Condition, eps: float = 1e-6,
            n_components: int | None = None) -> "FeatureScaler":
        """Statistics over the images of ``cond`` (the training images); with
        ``n_components``, also the principal axes of the z-scored pooled features and
        tokens (at most their number of dimensions: :func:`n_feature_dims`)."""
        if len(cond) < 2:
            raise ValueError(f"FeatureScaler.fit needs at least 2 images, got {len(cond)}")
        pooled, tokens = cond.pooled.float(), cond.tokens
        if tokens.shape[1] == 0:  # no token sequence (see inputs_for): nothing to scale
            empty = pooled.new_zeros(tokens.shape[1:])
            scaler = cls(pooled.mean(0), pooled.std(0) + eps, empty, empty + 1)
        else:
            total = torch.zeros(tokens.shape[1:], dtype=torch.float64, device=tokens.device)
            squares = torch.zeros_like(total)
            for block in tokens.split(CHUNK_IMAGES):
                block = block.double()
                total += block.sum(0)
                squares += block.square().sum(0)
            n = len(tokens)
            mean = total / n
            std = ((squares - n * mean.square()) / (n - 1)).clamp_min(0).sqrt()
            scaler = cls(pooled.mean(0), pooled.std(0) + eps, mean.float(), std.float() + eps)
        if n_components is None:
            return scaler
        tokens_basis = None
        if tokens.shape[1]:
            # Image by image block, so no z-scored copy of every token is ever made
            # (THINGS-MEG: 22 k images × 49 tokens × 1776 dimensions).
            tokens_basis = principal_axes(
                (scaler._scale_tokens(block).reshape(-1, tokens.shape[2])
                 for block in cond.tokens.split(CHUNK_IMAGES)), n_components)
        return replace(scaler, pooled_basis=principal_axes(scaler(cond).pooled, n_components),
                       tokens_basis=tokens_basis)

    def _scale_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens.float() - self.tokens_mean) / self.tokens_std

    def __call__(self, cond: Condition) -> Condition:
        if cond.pooled.shape[1:] != self.pooled_mean.shape or cond.tokens.shape[1:] != self.tokens_mean.shape:
            raise ValueError(
                f"features do not match the scaler: pooled {tuple(cond.pooled.shape[1:])} and tokens "
                f"{tuple(cond.tokens.shape[1:])}, expected {tuple(self.pooled_mean.shape)} and "
                f"{tuple(self.tokens_mean.shape)} (the encoder the model was trained with)")
        pooled = (cond.pooled.float() - self.pooled_mean) / self.pooled_std
        if self.pooled_basis is not None:
            pooled = pooled @ self.pooled_basis
        if self.tokens_basis is None:
            tokens = self._scale_tokens(cond.tokens)
        else:  # projected block by block: the full-size z-scored tokens never exist at once
            tokens = torch.cat([self._scale_tokens(block) @ self.tokens_basis
                                for block in cond.tokens.split(CHUNK_IMAGES)])
        return Condition(pooled, tokens)

    def state(self) -> dict:
        state = {"pooled_mean": self.pooled_mean, "pooled_std": self.pooled_std,
                 "tokens_mean": self.tokens_mean, "tokens_std": self.tokens_std}
        for name in ("pooled_basis", "tokens_basis"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name)
        return state


def n_feature_dims(n_dims: int, n_components: int | None) -> int:
    """How many feature dimensions the network reads: ``n_components`` principal components
    of ``n_dims`` (``None``: all of them; never more than there are)."""
    return n_dims if n_components is None else min(n_dims, n_components)


def principal_axes(rows, n_components: int) -> torch.Tensor:
    """The leading principal axes of a set of row vectors, shape
    (n_dims, min(n_components, n_dims)), by decreasing variance; each axis's sign makes its
    largest-magnitude entry positive, so the basis is reproducible.

    ``rows`` is a tensor (n_rows, n_dims) or an iterable of such blocks (their covariance is
    accumulated in float64 block by block, so the rows need not fit in memory at once).
    """
    if n_components < 1:
        raise ValueError(f"n_components: expected at least 1, got {n_components}")
    blocks = [rows] if isinstance(rows, torch.Tensor) else rows
    gram = total = None
    n = 0
    for block in blocks:
        block = block.double()
        if gram is None:
            gram = block.new_zeros(block.shape[1], block.shape[1])
            total = block.new_zeros(block.shape[1])
        gram += block.T @ block
        total += block.sum(0)
        n += len(block)
    if n < 2:
        raise ValueError(f"principal_axes: expected at least 2 rows, got {n}")
    mean = total / n
    covariance = (gram - n * torch.outer(mean, mean)) / (n - 1)
    variances, axes = torch.linalg.eigh(covariance)
    n_kept = n_feature_dims(len(mean), n_components)
    keep = torch.argsort(variances, descending=True)[:n_kept]
    axes = axes[:, keep]
    signs = torch.sign(axes.gather(0, axes.abs().argmax(0, keepdim=True)))
    return (axes * signs).float()


def inputs_for(cond: Condition, conditioning: str) -> Condition:
    """``cond`` with only what ``conditioning`` reads: the token sequence is kept for
    cross-attention alone (for the others it is emptied to shape (batch, 0, token_dim), which
    saves gathering and scaling ~49 × token_dim numbers per training example)."""
    if check_conditioning(conditioning) == "cross_attention":
        return cond
    return Condition(cond.pooled, cond.tokens[:, :0])


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
        return x + multi_head_attention(self.attn, q, context).transpose(1, 2)


def multi_head_attention(attn: nn.MultiheadAttention, query: torch.Tensor,
                         memory: torch.Tensor) -> torch.Tensor:
    """What ``attn(query, memory, memory)`` returns (batch first), computed with plain
    matrix products from its own weights.

    Why: for the U-Net's short sequences (≤ 100 queries, ≤ 50 keys, head size 8-16) the
    module's fused CPU path spends its time in overhead; this is the same function at about
    2/3 of the cost (forward and backward, batch 64, one thread; the default generator's
    seven cross-attentions went from ~110 to ~80 ms a step), and the checkpoints stay
    those of ``nn.MultiheadAttention``.

    Parameters
    ----------
    attn : torch.nn.MultiheadAttention
        Built with ``batch_first=True``; its projections are used, its dropout is not (0).
    query : Tensor, shape (batch, n_queries, embed_dim)
    memory : Tensor, shape (batch, n_keys, kdim)
        Keys and values.

    Returns
    -------
    Tensor, shape (batch, n_queries, embed_dim)
    """
    heads, dim = attn.num_heads, attn.head_dim
    if attn._qkv_same_embed_dim:
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = attn.q_proj_weight, attn.k_proj_weight, attn.v_proj_weight
    b_q, b_k, b_v = (attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None
                     else (None, None, None))
    batch, n_queries, n_keys = query.shape[0], query.shape[1], memory.shape[1]
    q = F.linear(query, w_q, b_q).view(batch, n_queries, heads, dim).transpose(1, 2)
    k = F.linear(memory, w_k, b_k).view(batch, n_keys, heads, dim).transpose(1, 2)
    v = F.linear(memory, w_v, b_v).view(batch, n_keys, heads, dim).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) * dim ** -0.5, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(batch, n_queries, heads * dim)
    return attn.out_proj(out)


class FiLMEncoder(nn.Module):
    """Pooled embedding → a vector added to the timestep embedding ``(batch, t_dim)``.

    Every residual block turns the timestep embedding into a per-channel scale and shift
    (FiLM, Perez et al. 2018), so the condition reaches all levels of the U-Net.
    """

    def __init__(self, embed_dim: int, t_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, t_dim), nn.SiLU(),
                                  nn.Linear(t_dim, t_dim))
        self.null = nn.Parameter(torch.zeros(1, t_dim))

    def forward(self, cond: Condition, drop_cond: torch.Tensor | None) -> torch.Tensor:
        return _drop(self.proj(cond.pooled), self.null, drop_cond)
