"""A 1-D U-Net denoiser over time, with M/EEG channels as input features.

``x (batch, n_channels, n_times)`` → prediction of the same shape (ε or v, as the diffusion
process asks). The time axis is padded to a multiple of the total down-sampling factor and
cropped back, so any epoch length works (THINGS-EEG2: 100 samples; THINGS-MEG: 281).
Structure per level: residual blocks with the timestep embedding as scale/shift (FiLM),
cross-attention to the image context when ``conditioning='cross_attention'``, then
down-sampling; self-attention at the lowest resolutions; mirrored up path with skips.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import (ConcatEncoder, Condition, ContextEncoder, CrossAttention,
                           FiLMEncoder, check_conditioning, multi_head_attention)


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet1D` (hashed into the checkpoint key).

    ``attention_levels`` counts from the lowest resolution: 1 = self-attention only in the
    middle block and the deepest level. ``feature_components``: the network reads this many
    leading principal components of the z-scored image features (pooled embedding and
    tokens each; fit on the training images, :class:`~analysis.models.conditioning.FeatureScaler`);
    ``None``: every dimension. ``embed_dim`` and ``token_dim`` are what it reads.
    ``cross_attention_levels`` (cross-attention only) counts the resolutions, from the lowest,
    whose levels attend to the image context besides the middle block; ``None``: every level.
    """

    n_channels: int
    conditioning: str = "cross_attention"
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    attention_levels: int = 1
    heads: int = 4
    dropout: float = 0.0
    embed_dim: int = 512
    token_dim: int = 768
    n_tokens: int = 49
    context_dim: int = 128
    concat_maps: int = 16
    feature_components: int | None = None
    cross_attention_levels: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, shape (batch, dim) (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_dim: int, dropout: float):
        super().__init__()
        self.block1 = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv1d(c_in, c_out, 3, padding=1))
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(t_dim, 2 * c_out))
        self.block2 = nn.Sequential(_norm(c_out), nn.SiLU(), nn.Dropout(dropout),
                                    nn.Conv1d(c_out, c_out, 3, padding=1))
        nn.init.zeros_(self.block2[-1].weight)  # residual branch starts at zero
        nn.init.zeros_(self.block2[-1].bias)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        scale, shift = self.film(t_emb)[:, :, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
        return self.skip(x) + self.block2(h)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.norm = _norm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).transpose(1, 2)
        return x + multi_head_attention(self.attn, h, h).transpose(1, 2)


class Level(nn.Module):
    """Residual blocks, then optional self- and cross-attention, at one resolution."""

    def __init__(self, c_in: int, c_out: int, n_blocks: int, t_dim: int, dropout: float,
                 self_attention: bool, context_dim: int | None, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            [ResBlock(c_in if i == 0 else c_out, c_out, t_dim, dropout) for i in range(n_blocks)])
        self.self_attn = SelfAttention(c_out, heads) if self_attention else None
        self.cross_attn = CrossAttention(c_out, context_dim, heads) if context_dim else None

    def forward(self, x, t_emb, context):
        for block in self.blocks:
            x = block(x, t_emb)
        if self.self_attn is not None:
            x = self.self_attn(x)
        if self.cross_attn is not None:
            x = self.cross_attn(x, context)
        return x


class UNet1D(nn.Module):
    """Denoiser ``model(x_t, t, cond=None, drop_cond=None)`` with the selected conditioning.

    Parameters
    ----------
    config : UNetConfig

    Notes
    -----
    ``cond`` is a :class:`~analysis.models.conditioning.Condition` (ignored when
    ``conditioning='none'``); ``drop_cond`` (bool, shape (batch,)) swaps in the learned null
    condition for classifier-free guidance.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        conditioning = check_conditioning(config.conditioning)
        c = config.base_channels
        t_dim = 4 * c
        self.time_mlp = nn.Sequential(nn.Linear(c, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.context = (ContextEncoder(config.embed_dim, config.token_dim, config.context_dim,
                                       config.n_tokens)
                        if conditioning == "cross_attention" else None)
        self.concat = ConcatEncoder(config.embed_dim, config.concat_maps) if conditioning == "concat" else None
        self.film = FiLMEncoder(config.embed_dim, t_dim) if conditioning == "film" else None
        ctx = config.context_dim if self.context is not None else None
        extra = config.concat_maps if self.concat is not None else 0
        self.stem = nn.Conv1d(config.n_channels + extra, c, 3, padding=1)

        widths = [c * m for m in config.channel_mults]
        n_levels = len(widths)
        attn_from = n_levels - config.attention_levels
        cross_from = n_levels - (n_levels if config.cross_attention_levels is None
                                 else config.cross_attention_levels)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c_prev = c
        for i, w in enumerate(widths):
            self.down.append(Level(c_prev, w, config.blocks_per_level, t_dim, config.dropout,
                                   i >= attn_from, ctx if i >= cross_from else None,
                                   config.heads))
            last = i == n_levels - 1
            self.downsample.append(nn.Identity() if last else nn.Conv1d(w, w, 4, stride=2, padding=1))
            c_prev = w
        self.mid = Level(c_prev, c_prev, 2, t_dim, config.dropout, True, ctx, config.heads)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(Level(c_prev + w, w, config.blocks_per_level, t_dim, config.dropout,
                                 i >= attn_from, ctx if i >= cross_from else None,
                                 config.heads))
            self.upsample.append(nn.Identity() if i == 0 else
                                 nn.ConvTranspose1d(w, w, 4, stride=2, padding=1))
            c_prev = w
        self.head = nn.Sequential(_norm(c_prev), nn.SiLU(), nn.Conv1d(c_prev, config.n_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.factor = 2 ** (n_levels - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None = None,
                drop_cond: torch.Tensor | None = None) -> torch.Tensor:
        n_times = x.shape[-1]
        if (self.context is not None or self.concat is not None or self.film is not None) \
                and cond is None:
            # Unconditional pass of a conditional model: use the null condition everywhere.
            raise ValueError("this model is conditional: pass cond (and drop_cond=True rows "
                             "for the unconditional branch of guidance)")
        if self.concat is not None:
            x = torch.cat([x, self.concat(cond, drop_cond, n_times)], dim=1)
        pad = (-n_times) % self.factor
        if pad:
            x = F.pad(x, (0, pad), mode="replicate")
        t_emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))
        if self.film is not None:
            t_emb = t_emb + self.film(cond, drop_cond)
        context = self.context(cond, drop_cond) if self.context is not None else None

        h = self.stem(x)
        skips = []
        for level, down in zip(self.down, self.downsample):
            h = level(h, t_emb, context)
            skips.append(h)
            h = down(h)
        h = self.mid(h, t_emb, context)
        for level, up in zip(self.up, self.upsample):
            h = level(torch.cat([h, skips.pop()], dim=1), t_emb, context)
            h = up(h)
        return self.head(h)[..., :n_times]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
