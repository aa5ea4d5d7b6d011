"""DenseDDPM: the fully-connected denoiser of Mittal et al. 2021 (their ``DenseDDPM``)."""

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ddpm.denoisers.embedding import DenseResBlock, TimeEmbedding


class DenseDDPM(nn.Module):
    """MLP over the flattened sample: Linear -> ``num_layers`` FiLM residual blocks -> LayerNorm -> Linear.

    Args:
        sample_shape: shape of one sample ``S`` (any rank; it is flattened).
        num_layers: residual blocks.
        mlp_dims: hidden width.
        emb_dim: width of the sinusoidal time encoding.
    """

    def __init__(self, sample_shape: Sequence[int], num_layers: int = 3, mlp_dims: int = 2048, emb_dim: int = 128):
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        data_dims = math.prod(self.sample_shape)
        self.time_embedding = TimeEmbedding(emb_dim)
        self.input = nn.Linear(data_dims, mlp_dims)
        self.blocks = nn.ModuleList(DenseResBlock(mlp_dims, self.time_embedding.out_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(mlp_dims)
        self.output = nn.Linear(mlp_dims, data_dims)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """x: [B, *S], t: [B] -> [B, *S]."""
        emb = self.time_embedding(t)  # (B, 4E)
        h = self.input(x.flatten(1))  # (B, mlp_dims)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(self.norm(h)).reshape(x.shape)
