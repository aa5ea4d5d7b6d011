import math

import pytest
import torch

from ddpm.schedules import cosine_betas, linear_betas, mittal_betas


@pytest.mark.parametrize(
    "fn, first, last",
    [(linear_betas, 1e-4, 0.02), (mittal_betas, 1e-6, 0.01)],
)
def test_linear_endpoints(fn, first, last):
    betas = fn(1000)
    assert betas.shape == (1000,) and betas.dtype == torch.float64
    assert betas[0].item() == pytest.approx(first, rel=1e-12)
    assert betas[-1].item() == pytest.approx(last, rel=1e-12)
    assert (betas[1:] - betas[:-1]).allclose(torch.full((999,), (last - first) / 999, dtype=torch.float64))


@pytest.mark.parametrize("fn", [linear_betas, mittal_betas, cosine_betas])
def test_alphas_cumprod_strictly_decreasing_in_unit_interval(fn):
    betas = fn(1000)
    assert ((betas > 0) & (betas < 1)).all()
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    assert (alphas_cumprod[1:] < alphas_cumprod[:-1]).all()
    assert 0 < alphas_cumprod[-1] < alphas_cumprod[0] < 1


def test_cosine_matches_closed_form():
    # eq. (17) of Nichol & Dhariwal: alpha_bar_t = f(t) / f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2).
    T, s = 1000, 0.008
    alphas_cumprod = torch.cumprod(1 - cosine_betas(T, s), 0)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 250, 500, 900):
        assert alphas_cumprod[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-9)
    assert cosine_betas(T).max().item() <= 0.999


def test_rejects_bad_length():
    with pytest.raises(ValueError, match="timesteps"):
        linear_betas(0)
