"""TransformerDDPM: the sequence denoiser of Mittal et al. 2021 for [frames, latent_dims] inputs."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ddpm.denoisers.embedding import DenseResBlock, TimeEmbedding, sinusoidal_embedding


class TransformerDDPM(nn.Module):
    """Input projection + frame-position encoding -> pre-LN self-attention layers -> FiLM residual MLP.

    As in Mittal et al., the time condition enters only through the FiLM blocks of the dense
    stack after the attention layers; with ``time_in_attention`` it is also added to every frame's
    token before the attention layers (as DiT-style denoisers do), so attention knows the noise level.

    Args:
        sample_shape: ``(frames, latent_dims)``.
        num_layers: transformer layers; num_heads: attention heads.
        num_mlp_layers: FiLM residual blocks after attention; mlp_dims: their width (and the
            transformer feed-forward width).
        embed_channels: model width inside attention.
        time_in_attention: add a projection of the time embedding to the tokens entering attention.
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
    ):
        super().__init__()
        if len(sample_shape) != 2:
            raise ValueError(f"TransformerDDPM needs sample_shape (frames, dims), got {tuple(sample_shape)}")
        frames, data_dims = sample_shape
        self.sample_shape = (frames, data_dims)
        self.input = nn.Linear(data_dims, embed_channels)
        # Frame positions 1..frames, fixed (not learned).
        positions = sinusoidal_embedding(torch.arange(1, frames + 1), embed_channels)
        self.register_buffer("position_encoding", positions, persistent=False)  # (L, C)
        layer = nn.TransformerEncoderLayer(
            embed_channels, num_heads, mlp_dims, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm_in = nn.LayerNorm(embed_channels)
        self.to_mlp = nn.Linear(embed_channels, mlp_dims)
        self.time_embedding = TimeEmbedding(emb_dim)
        self.time_to_tokens = nn.Linear(self.time_embedding.out_dim, embed_channels) if time_in_attention else None
        self.blocks = nn.ModuleList(DenseResBlock(mlp_dims, self.time_embedding.out_dim) for _ in range(num_mlp_layers))
        self.norm_out = nn.LayerNorm(mlp_dims)
        self.output = nn.Linear(mlp_dims, data_dims)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """x: [B, L, D], t: [B] -> [B, L, D]."""
        emb = self.time_embedding(t)  # (B, 4E)
        h = self.input(x) + self.position_encoding  # (B, L, C)
        if self.time_to_tokens is not None:
            h = h + self.time_to_tokens(emb)[:, None]
        h = self.encoder(h)
        h = self.to_mlp(self.norm_in(h))  # (B, L, mlp_dims)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(self.norm_out(h))
