"""Denoisers: every one maps ``(x: [B, *S], t: [B]) -> [B, *S]``; picked with ``model=...``."""

from ddpm.denoisers.dense import DenseDDPM
from ddpm.denoisers.transformer import TransformerDDPM
from ddpm.denoisers.unet import UNet

__all__ = ["DenseDDPM", "TransformerDDPM", "UNet"]
