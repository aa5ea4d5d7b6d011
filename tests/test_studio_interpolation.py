"""The studio's latent and noise interpolation math (``ddpm/studio/interpolation.py``): slerp, lerp, DDIM
inversion and sampling, against closed forms."""

import numpy as np
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.schedules import linear_betas
from ddpm.studio.interpolation import ddim_invert, ddim_sample, lerp, slerp


def test_slerp_and_lerp_closed_forms():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    points = slerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(points[0], a) and torch.allclose(points[2], b)
    assert torch.allclose(points[1], torch.tensor([0.5**0.5, 0.5**0.5]), atol=1e-6)  # on the circle, halfway
    assert torch.allclose(lerp(a, b, torch.tensor([0.25]))[0], torch.tensor([0.75, 0.25]))


def gaussian_oracle(diffusion: GaussianDiffusion, scale: float):
    """The exact eps of data ~ N(0, scale^2 I): E[eps | x_t] = sqrt(1 - ab) x_t / (ab scale^2 + 1 - ab)."""
    levels = diffusion.sqrt_alphas_cumprod.double() * 1000.0

    def denoiser(x, cond):
        t = (levels[None, :] - cond.double()[:, None]).abs().argmin(1)
        ab = diffusion.alphas_cumprod.double()[t].reshape(-1, *(1,) * (x.ndim - 1))
        return ((1 - ab).sqrt() * x / (ab * scale**2 + 1 - ab)).to(x.dtype)

    return denoiser


def test_ddim_inversion_follows_the_exact_ode_and_comes_back():
    """For Gaussian data the probability-flow ODE is linear: x_t = x_0 sqrt(ab_t s^2 + 1 - ab_t) / s.

    DDIM is a first-order solver of it: the round trip's error shrinks about as 1 / steps.
    """
    diffusion = GaussianDiffusion(linear_betas(1000), time_condition="noise_level")
    scale, x_start = 0.5, torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    oracle = gaussian_oracle(diffusion, scale)
    ab_end = diffusion.alphas_cumprod.double()[-1]
    exact = x_start * (ab_end * scale**2 + 1 - ab_end).sqrt() / scale
    error = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    for steps, bound in ((200, 0.02), (1000, 0.004)):  # measured 0.0134 and 0.0027
        noise = ddim_invert(diffusion, oracle, x_start, steps)
        assert error(noise, exact) < 0.002  # measured 0.0009 and 0.0004
        assert error(ddim_sample(diffusion, oracle, noise, steps), x_start) < bound


def test_ddim_timesteps_run_evenly_from_0_to_t_minus_1():
    from ddpm.studio.interpolation import ddim_timesteps

    assert ddim_timesteps(1000, 5) == [0, 250, 500, 749, 999]
    assert ddim_timesteps(10, 2) == [0, 9] and ddim_timesteps(10, 1) == [0]
    assert ddim_timesteps(10, 10) == ddim_timesteps(10, 50) == list(range(10))


def three_step_diffusion(**kwargs):
    """T = 3 with alpha_bar = 0.9, 0.72, 0.504, and a denoiser whose eps is ``eps[t]`` everywhere."""
    from ddpm.diffusion import GaussianDiffusion

    return GaussianDiffusion(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), time_condition="step", **kwargs)


def constant_eps(*values: float):
    return lambda x, cond: torch.full_like(x, 1.0) * torch.tensor(values, dtype=x.dtype)[cond.long()][:, None]


def test_one_ddim_step_there_and_back_is_eq_12_down_to_x_0():
    from ddpm.studio.interpolation import ddim_invert, ddim_sample

    diffusion, denoiser = three_step_diffusion(), constant_eps(0.5, 0.0, 0.0)
    x0 = torch.tensor([[0.2, -0.4]], dtype=torch.float64)
    noise = ddim_invert(diffusion, denoiser, x0, 1)  # x_0 -> step 0 (the only one)
    torch.testing.assert_close(noise, 0.9**0.5 * x0 + 0.1**0.5 * 0.5)
    x = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(ddim_sample(diffusion, denoiser, x, 1), (x - 0.1**0.5 * 0.5) / 0.9**0.5)  # to x_0
    torch.testing.assert_close(ddim_sample(diffusion, denoiser, noise, 1), x0)


def test_a_clipped_x_0_keeps_eps_consistent_from_step_0_on():
    """Inverting x_0 = 0.5 to steps 0 and 2 (eps 0, then -2): at step 0 -> 2 the predicted x_0 is
    (0.5 sqrt(.9) + 2 sqrt(.1)) / sqrt(.9) > 1, clipped to 1, so eps becomes (0.5 - 1) sqrt(.9) / sqrt(.1) = -1.5."""
    from ddpm.studio.interpolation import ddim_invert

    diffusion = three_step_diffusion(clip_x_start=True, clip_value=1.0)
    noise = ddim_invert(diffusion, constant_eps(0.0, 0.0, -2.0), torch.full((1, 1), 0.5, dtype=torch.float64), 2)
    torch.testing.assert_close(noise, torch.full((1, 1), 0.504**0.5 - 1.5 * 0.496**0.5, dtype=torch.float64))


def test_slerp_stays_on_the_sphere_for_nearly_parallel_ends():
    from ddpm.studio.interpolation import slerp

    a, b = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([np.cos(0.05), np.sin(0.05)])
    mid = slerp(a, b, torch.tensor([0.5]))[0]
    torch.testing.assert_close(mid, torch.tensor([np.cos(0.025), np.sin(0.025)]), rtol=0, atol=1e-9)
