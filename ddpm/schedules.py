"""Beta schedules: pure functions ``(timesteps, ...) -> Tensor[T]`` in float64.

Picked by Hydra ``_target_`` (``diffusion.betas`` in ``conf/diffusion/*.yaml``); the diffusion process casts the
result to float32 buffers after deriving its coefficients in float64.
"""

import math

import torch


def linear_betas(timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear betas of Ho et al. 2020 (sec. 4: 1e-4 -> 0.02 over T=1000)."""
    _check(timesteps)
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)


def mittal_betas(timesteps: int = 1000, beta_start: float = 1e-6, beta_end: float = 0.01) -> torch.Tensor:
    """Linear betas over the range Mittal et al. 2021 used for MusicVAE latents (1e-6 -> 0.01)."""
    return linear_betas(timesteps, beta_start, beta_end)


def cosine_betas(timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal 2021, eq. (17), betas clipped at ``max_beta``."""
    _check(timesteps)
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=max_beta)


def _check(timesteps: int) -> None:
    if timesteps < 1:
        raise ValueError(f"timesteps must be a positive integer, got {timesteps}")
