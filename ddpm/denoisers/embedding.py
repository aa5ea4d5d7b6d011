"""The time embedding every denoiser shares, and the FiLM blocks of Mittal et al. 2021."""

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(positions: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer sinusoidal encoding (Vaswani et al. 2017) of float positions: [N] -> [N, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device) / max(half - 1, 1))
    args = positions.float()[:, None] * freqs[None, :]  # (N, half)
    emb = torch.cat([args.sin(), args.cos()], dim=-1)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal encoding of the time condition followed by a two-layer MLP: [B] -> [B, out_dim]."""

    def __init__(self, dim: int = 128, out_dim: int | None = None):
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim or 4 * dim
        self.mlp = nn.Sequential(nn.Linear(dim, self.out_dim), nn.SiLU(), nn.Linear(self.out_dim, self.out_dim))

    def forward(self, cond: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(cond, self.dim))


class DenseFiLM(nn.Module):
    """Feature-wise linear modulation: time embedding [B, E] -> (scale, shift), each [B, features]."""

    def __init__(self, emb_dim: int, features: int):
        super().__init__()
        self.proj = nn.Linear(emb_dim, 2 * features)

    def forward(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        scale, shift = self.proj(emb).chunk(2, dim=-1)
        return scale, shift


class DenseResBlock(nn.Module):
    """Two (LayerNorm -> FiLM -> SiLU -> Linear) layers with a skip connection, as in Mittal et al.

    The modulation is ``(1 + scale) * h + shift`` rather than their ``scale * h + shift``, so a
    freshly initialised block starts near the identity.
    """

    def __init__(self, features: int, emb_dim: int):
        super().__init__()
        self.film = DenseFiLM(emb_dim, features)
        self.norm1 = nn.LayerNorm(features)
        self.linear1 = nn.Linear(features, features)
        self.norm2 = nn.LayerNorm(features)
        self.linear2 = nn.Linear(features, features)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x: [B, ..., F]; emb: [B, E] (broadcast over the middle axes)."""
        scale, shift = self.film(emb)
        scale = scale.reshape(scale.shape[0], *([1] * (x.ndim - 2)), -1)  # (B, 1.., F)
        shift = shift.reshape(shift.shape[0], *([1] * (x.ndim - 2)), -1)
        h = nn.functional.silu(self.norm1(x) * (1 + scale) + shift)
        h = self.linear1(h)
        h = nn.functional.silu(self.norm2(h) * (1 + scale) + shift)
        return x + self.linear2(h)
