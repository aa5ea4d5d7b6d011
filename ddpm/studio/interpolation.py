"""Interpolating between two melodies: in model space, or through the diffusion noise (DDIM).

Torch only; the diffusion and the denoiser are passed in. Through the noise: each end is mapped to
x_T by the deterministic DDIM ODE run forwards (DDIM inversion), the two noises are joined by
spherical interpolation (Gaussian noise lives near a sphere, where a straight line would pass
through low-norm, unlikely noise), and each point is mapped back with the same ODE.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from ddpm.diffusion import GaussianDiffusion

Denoiser = Callable[[Tensor, Tensor], Tensor]


def lerp(a: Tensor, b: Tensor, weights: Tensor) -> Tensor:
    """Straight-line points ``(1 - w) a + w b`` for each weight: ``[len(weights), *a.shape]``."""
    w = weights.reshape(-1, *((1,) * a.ndim)).to(a)
    return (1 - w) * a + w * b


def slerp(a: Tensor, b: Tensor, weights: Tensor) -> Tensor:
    """Spherical interpolation (Shoemake 1985) of the flattened ``a`` and ``b``: ``[len(weights), *a.shape]``."""
    fa, fb = a.flatten().double(), b.flatten().double()
    cos = (fa @ fb / (fa.norm() * fb.norm())).clamp(-1, 1)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:  # (nearly) parallel: the sphere is flat here
        return lerp(a, b, weights)
    w = weights.double()[:, None]
    points = (torch.sin((1 - w) * omega) * fa + torch.sin(w * omega) * fb) / torch.sin(omega)
    return points.reshape(len(weights), *a.shape).to(a)


def ddim_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced diffusion steps from 0 to T - 1 (increasing)."""
    steps = max(1, min(steps, num_timesteps))
    return sorted({round(i * (num_timesteps - 1) / max(steps - 1, 1)) for i in range(steps)})


def _alpha_bar(diffusion: GaussianDiffusion, t: int, like: Tensor) -> Tensor:
    """alpha_bar_t, with t = -1 standing for x_0 itself (alpha_bar = 1)."""
    return diffusion.alphas_cumprod[t] if t >= 0 else like.new_tensor(1.0)


def _ddim_step(diffusion: GaussianDiffusion, denoiser: Denoiser, x: Tensor, t: int, source: int, target: int) -> Tensor:
    """Move ``x`` from step ``source`` to ``target`` along the DDIM ODE (eq. 12 of Song et al. 2021,
    eta = 0) with the noise predicted at step ``t``; ``target`` above ``source`` runs it backwards."""
    eps = denoiser(x, diffusion.model_condition(torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)))
    a_source, a_target = _alpha_bar(diffusion, source, x), _alpha_bar(diffusion, target, x)
    x_start = (x - (1 - a_source).sqrt() * eps) / a_source.sqrt()  # eq. (9): the predicted x_0
    if diffusion.clip_x_start:
        x_start = x_start.clamp(-diffusion.clip_value, diffusion.clip_value)
        if source >= 0:  # keep eps consistent with the clipped x_0
            eps = (x - a_source.sqrt() * x_start) / (1 - a_source).sqrt()
    return a_target.sqrt() * x_start + (1 - a_target).sqrt() * eps


@torch.inference_mode()
def ddim_invert(diffusion: GaussianDiffusion, denoiser: Denoiser, x_start: Tensor, steps: int) -> Tensor:
    """x_0 ``[B, *S]`` -> the x_T from which ``ddim_sample`` with the same ``steps`` returns (about) x_0."""
    x, source = x_start, -1
    for t in ddim_timesteps(diffusion.num_timesteps, steps):
        x, source = _ddim_step(diffusion, denoiser, x, t, source, t), t
    return x


@torch.inference_mode()
def ddim_sample(diffusion: GaussianDiffusion, denoiser: Denoiser, x_end: Tensor, steps: int) -> Tensor:
    """x_T ``[B, *S]`` -> x_0 along the deterministic DDIM ODE with ``steps`` model calls."""
    ts = ddim_timesteps(diffusion.num_timesteps, steps)
    x = x_end
    for t, target in zip(reversed(ts), [*reversed(ts[:-1]), -1]):
        x = _ddim_step(diffusion, denoiser, x, t, t, target)
    return x
