"""UNet denoiser for small images (Ho et al. 2020, scaled down for 28x28 and 8x8 digits)."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ddpm.denoisers.embedding import TimeEmbedding


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> Conv, plus the time embedding, twice, with a 1x1 skip where widths differ."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.block1 = nn.Sequential(_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.block2 = nn.Sequential(
            _norm(out_channels), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.block1(x) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.block2(h)


class LinearAttention(nn.Module):
    """Linear attention (Katharopoulos et al. 2020; Shen et al. 2021): cost linear in pixels."""

    def __init__(self, channels: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        self.norm = _norm(channels)
        self.to_qkv = nn.Conv2d(channels, 3 * heads * dim_head, 1, bias=False)
        self.to_out = nn.Conv2d(heads * dim_head, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(b, 3, self.heads, -1, h * w).unbind(1)  # (B, nh, d, N)
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)  # (B, nh, d, d)
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(b, -1, h, w)
        return x + self.to_out(out)


class UNet(nn.Module):
    """Residual UNet: down to smaller, wider maps, linear attention in the middle, up with skips.

    Args:
        sample_shape: ``(channels, height, width)`` of one image.
        base_channels: width of the first level; level i has ``base_channels * channel_mults[i]``.
        channel_mults: one entry per resolution level (each level after the first halves H and W).
        num_res_blocks: residual blocks per level on the way down.
        emb_dim: width of the sinusoidal time encoding.
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        emb_dim: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(sample_shape) != 3:
            raise ValueError(f"UNet needs sample_shape (channels, height, width), got {tuple(sample_shape)}")
        self.sample_shape = tuple(sample_shape)
        in_channels = sample_shape[0]
        self.time_embedding = TimeEmbedding(emb_dim)
        e = self.time_embedding.out_dim
        widths = [base_channels * m for m in channel_mults]
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        self.down = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(ch, width, e, dropout))
                ch = width
                skips.append(ch)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)

        self.mid1 = ResBlock(ch, ch, e, dropout)
        self.mid_attn = LinearAttention(ch)
        self.mid2 = ResBlock(ch, ch, e, dropout)

        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), width, e, dropout))
                ch = width
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.conv_out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1))
        # Start as the zero predictor, as improved-diffusion does: a stable first step.
        nn.init.zeros_(self.conv_out[-1].weight)
        nn.init.zeros_(self.conv_out[-1].bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """x: [B, C, H, W], t: [B] -> [B, C, H, W]."""
        emb = self.time_embedding(t)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                skip = hs.pop()
                if h.shape[-2:] != skip.shape[-2:]:  # odd sizes (7 -> 4 -> 8): crop back to the skip
                    h = h[..., : skip.shape[-2], : skip.shape[-1]]
                h = layer(torch.cat([h, skip], dim=1), emb)
            else:
                h = layer(h)
        return self.conv_out(h)
