"""TransformerDDPM: the sequence denoiser of Mittal et al. 2021 for [frames, latent_dims] inputs."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ddpm.denoisers.embedding import DenseResBlock, TimeEmbedding, sinusoidal_embedding


class TransformerDDPM(nn.Module):
    """Input projection + frame-position encoding -> pre-LN self-attention layers -> FiLM residual MLP.

    As in Mittal et al., the time condition enters only through the FiLM blocks of the dense
    stack after the attention layers; with ``time_in_attention`` it is also added to every frame's
    token before the attention layers (as DiT-style denoisers do), so attention knows the noise level.
    With ``relative_attention`` every attention layer adds a learned bias per head and frame offset
    to its scores (relative position attention as in the Music Transformer, Huang et al. 2019, in
    the bias form of T5, Raffel et al. 2020), so a head can read "the frame p before this one" at
    every position alike, which is how a repeated section is copied. With ``self_condition`` the
    network also reads an estimate of x_0 (its own previous prediction while sampling, zeros
    without one), concatenated to x frame by frame: self-conditioning (Chen et al. 2023, "Analog
    Bits", sec. 3.2). With ``period_condition`` the network is told the loop it is drawing
    (``ddpm.periods``): an embedding of the period p (0: a tune that does not repeat; -1: unknown)
    and of each frame's place in the loop, i mod p, is added to every frame's token, so the content of
    a tune is drawn knowing how long it is and which frames are its copies; without
    ``period_phase`` only the period is told (where a frame sits in its loop is left to attention).

    Args:
        sample_shape: ``(frames, latent_dims)``.
        num_layers: transformer layers; num_heads: attention heads.
        num_mlp_layers: FiLM residual blocks after attention; mlp_dims: their width (and the
            transformer feed-forward width).
        embed_channels: model width inside attention.
        time_in_attention: add a projection of the time embedding to the tokens entering attention.
        relative_attention: learned per-layer, per-head attention bias for each frame offset.
        self_condition: take ``x_self_cond`` [B, L, D] as a second input (``ddpm.diffusion.SelfConditioning``).
        period_condition: take ``period`` [B] long (0 ... frames - 1, or -1 for unknown) as a condition.
        period_phase: with ``period_condition``, also tell each frame's phase i mod p.
        period_unknown: the share of training sequences whose period the network is not told (so it
            also samples without one); read by ``DiffusionModule``.
        period_guidance: how strongly samples are told their period (``ddpm.periods.PeriodGuided``: 1 told,
            0 not told, in between a blend of the two predictions); read by ``DiffusionModule.sample``.
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        num_layers: int = 6,
        num_heads: int = 8,
        num_mlp_layers: int = 2,
        mlp_dims: int = 2048,
        embed_channels: int = 128,
        emb_dim: int = 128,
        dropout: float = 0.0,
        time_in_attention: bool = False,
        relative_attention: bool = False,
        self_condition: bool = False,
        period_condition: bool = False,
        period_phase: bool = True,
        period_unknown: float = 0.1,
        period_guidance: float = 1.0,
    ):
        super().__init__()
        if len(sample_shape) != 2:
            raise ValueError(f"TransformerDDPM needs sample_shape (frames, dims), got {tuple(sample_shape)}")
        frames, data_dims = sample_shape
        self.sample_shape = (frames, data_dims)
        self.self_condition = bool(self_condition)
        self.period_condition, self.period_unknown = bool(period_condition), float(period_unknown)
        if not 0 <= self.period_unknown <= 1:
            raise ValueError(f"period_unknown must be in [0, 1], got {period_unknown}")
        self.period_guidance = float(period_guidance)
        # Periods 0 ... frames - 1 and 'unknown' (row frames); phases 0 ... frames - 1 and 'none' (row frames).
        self.period_embedding = nn.Embedding(frames + 1, embed_channels) if period_condition else None
        self.phase_embedding = nn.Embedding(frames + 1, embed_channels) if period_condition and period_phase else None
        self.input = nn.Linear(data_dims * (2 if self_condition else 1), embed_channels)
        # Frame positions 1..frames, fixed (not learned).
        positions = sinusoidal_embedding(torch.arange(1, frames + 1), embed_channels)
        self.register_buffer("position_encoding", positions, persistent=False)  # (L, C)
        layer = nn.TransformerEncoderLayer(
            embed_channels, num_heads, mlp_dims, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.num_heads = num_heads
        # bias[layer, head, k] for the offset (key frame - query frame) = k - (frames - 1); zero at start.
        self.relative_bias = (
            nn.Parameter(torch.zeros(num_layers, num_heads, 2 * frames - 1)) if relative_attention else None
        )
        offsets = torch.arange(frames)[None, :] - torch.arange(frames)[:, None] + frames - 1
        self.register_buffer("offset_index", offsets, persistent=False)  # (L, L): query i, key j -> k
        self.norm_in = nn.LayerNorm(embed_channels)
        self.to_mlp = nn.Linear(embed_channels, mlp_dims)
        self.time_embedding = TimeEmbedding(emb_dim)
        self.time_to_tokens = nn.Linear(self.time_embedding.out_dim, embed_channels) if time_in_attention else None
        self.blocks = nn.ModuleList(DenseResBlock(mlp_dims, self.time_embedding.out_dim) for _ in range(num_mlp_layers))
        self.norm_out = nn.LayerNorm(mlp_dims)
        self.output = nn.Linear(mlp_dims, data_dims)

    def forward(self, x: Tensor, t: Tensor, x_self_cond: Tensor | None = None, period: Tensor | None = None) -> Tensor:
        """x: [B, L, D], t: [B], x_self_cond: [B, L, D] or None (zeros; ignored without ``self_condition``),
        period: [B] long or None (unknown; ignored without ``period_condition``) -> [B, L, D]."""
        emb = self.time_embedding(t)  # (B, 4E)
        if self.self_condition:
            x = torch.cat([x, torch.zeros_like(x) if x_self_cond is None else x_self_cond], dim=-1)  # (B, L, 2D)
        h = self.input(x) + self.position_encoding  # (B, L, C)
        if self.time_to_tokens is not None:
            h = h + self.time_to_tokens(emb)[:, None]
        if self.period_embedding is not None:
            h = h + self._period_tokens(x.shape[0], period, x.device)
        if self.relative_bias is None:
            h = self.encoder(h)
        else:
            for layer, bias in zip(self.encoder.layers, self.relative_bias):
                h = _pre_ln_layer(layer, h, bias[:, self.offset_index], self.num_heads)  # bias: (heads, L, L)
        h = self.to_mlp(self.norm_in(h))  # (B, L, mlp_dims)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(self.norm_out(h))

    def _period_tokens(self, batch: int, period: Tensor | None, device: torch.device) -> Tensor:
        """[B, L, C]: the embedding of each sequence's period and (``period_phase``) of each frame's phase i mod p."""
        frames = self.sample_shape[0]
        if period is None:
            period = torch.full((batch,), -1, dtype=torch.long, device=device)
        period = period.to(device=device, dtype=torch.long)
        if ((period < -1) | (period >= frames)).any():
            raise ValueError(f"period must be in -1 ... {frames - 1}, got {period.tolist()}")
        rows = torch.where(period < 0, frames, period)
        tokens = self.period_embedding(rows)[:, None].expand(-1, frames, -1)
        if self.phase_embedding is None:
            return tokens
        i = torch.arange(frames, device=device)
        phase = torch.where(period[:, None] > 0, i % period[:, None].clamp(min=1), frames)  # 'none': free / unknown
        return tokens + self.phase_embedding(phase)


def _pre_ln_layer(layer: nn.TransformerEncoderLayer, h: Tensor, bias: Tensor, heads: int) -> Tensor:
    """``layer`` (pre-LN) with ``bias`` (heads, L, L) added to its attention scores, written out with the
    layer's own weights: torch's fused inference path takes no per-head float mask."""
    attn = layer.self_attn
    batch, length, channels = h.shape
    q, k, v = F.linear(layer.norm1(h), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (z.reshape(batch, length, heads, channels // heads).transpose(1, 2) for z in (q, k, v))
    dropout = attn.dropout if layer.training else 0.0
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)  # (B, heads, L, C / heads)
    h = h + layer.dropout1(attn.out_proj(a.transpose(1, 2).reshape(batch, length, channels)))
    x = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(h)))))
    return h + layer.dropout2(x)
