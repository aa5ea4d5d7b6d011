import pytest
import torch

from ddpm.diffusion import NOISE_LEVEL_SCALE, GaussianDiffusion
from ddpm.schedules import linear_betas


@pytest.fixture
def diffusion():
    return GaussianDiffusion(linear_betas(1000))


def delta_oracle(diffusion: GaussianDiffusion, x0: torch.Tensor):
    """The exact eps-predictor for data concentrated at x0: eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)."""

    def denoiser(x_t, cond):
        t = (cond - 0).long() if diffusion.time_condition == "step" else None
        ab = diffusion.alphas_cumprod[t].reshape(-1, *([1] * (x_t.ndim - 1)))
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    return denoiser


def test_q_sample_moments(diffusion):
    torch.manual_seed(0)
    n, t = 200_000, 400
    x0 = torch.full((n, 1), 0.7)
    xt = diffusion.q_sample(x0, torch.full((n,), t), torch.randn(n, 1))
    ab = torch.cumprod(1 - linear_betas(1000), 0)[t].item()
    assert xt.mean().item() == pytest.approx(ab**0.5 * 0.7, abs=0.005)
    assert xt.var().item() == pytest.approx(1 - ab, abs=0.005)


def test_posterior_variance_zero_at_t0_and_matches_eq7(diffusion):
    assert diffusion.posterior_variance[0].item() == 0.0
    betas = linear_betas(1000)
    ab = torch.cumprod(1 - betas, 0)
    t = 500
    expected = betas[t] * (1 - ab[t - 1]) / (1 - ab[t])
    assert diffusion.posterior_variance[t].item() == pytest.approx(expected.item(), rel=1e-6)


def test_predict_start_from_noise_inverts_q_sample(diffusion):
    torch.manual_seed(1)
    x0, noise = torch.randn(8, 3, 5), torch.randn(8, 3, 5)
    t = torch.randint(0, 1000, (8,))
    xt = diffusion.q_sample(x0, t, noise)
    assert torch.allclose(diffusion.predict_start_from_noise(xt, t, noise), x0, atol=2e-3)


def test_posterior_mean_equals_eq11(diffusion):
    torch.manual_seed(2)
    xt, eps = torch.randn(4, 6), torch.randn(4, 6)
    t = torch.tensor([1, 10, 400, 999])
    mean, std, _ = diffusion.p_mean_std(lambda x, c: eps, xt, t)
    betas = linear_betas(1000)[t].float()[:, None]
    ab = torch.cumprod(1 - linear_betas(1000), 0)[t].float()[:, None]
    eq11 = (xt - betas / (1 - ab).sqrt() * eps) / (1 - betas).sqrt()
    assert torch.allclose(mean, eq11, atol=1e-4)
    assert torch.allclose(std.squeeze(), diffusion.posterior_variance[t].sqrt())


def test_loss_per_example_and_zero_for_oracle(diffusion):
    torch.manual_seed(3)
    x0 = torch.randn(5, 2, 4)
    loss = diffusion.loss(lambda x, c: torch.zeros_like(x), x0)
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    assert loss.mean().item() == pytest.approx(1.0, abs=0.3)  # E||eps||^2 / dims = 1
    noise = torch.randn_like(x0)
    assert diffusion.loss(lambda x, c: noise, x0, noise=noise).abs().max().item() == 0.0


def test_oracle_sampling_recovers_x0(diffusion):
    x0 = torch.tensor([[0.3, -0.8, 0.5]])
    out = diffusion.sample(delta_oracle(diffusion, x0), (4, 3), torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0.expand(4, 3), atol=1e-3)


def test_sampling_reproducible_from_seed(diffusion):
    d = GaussianDiffusion(linear_betas(20))
    net = lambda x, c: 0.1 * x  # noqa: E731
    a = d.sample(net, (3, 4), torch.Generator().manual_seed(7))
    b = d.sample(net, (3, 4), torch.Generator().manual_seed(7))
    c = d.sample(net, (3, 4), torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_progressive_yields_every_step_and_starts_from_noise():
    d = GaussianDiffusion(linear_betas(15))
    steps = list(d.sample_progressive(lambda x, c: 0 * x, (2, 3), torch.Generator().manual_seed(0)))
    assert [s for s, _ in steps] == list(range(14, -1, -1)) + [-1]
    assert torch.equal(steps[0][1], torch.randn((2, 3), generator=torch.Generator().manual_seed(0)))


def test_infilling_keeps_known_region():
    d = GaussianDiffusion(linear_betas(50))
    known = torch.randn(2, 8, 3)
    mask = torch.zeros(2, 8, 3)
    mask[:, :3] = 1
    out = d.sample(lambda x, c: 0 * x, (2, 8, 3), torch.Generator().manual_seed(0), known=known, mask=mask)
    assert torch.equal(out[:, :3], known[:, :3]) and not torch.allclose(out[:, 3:], known[:, 3:])


def test_clipping_bounds_predicted_x0():
    d = GaussianDiffusion(linear_betas(10), clip_x_start=True)
    _, _, x0 = d.p_mean_std(lambda x, c: -10 * torch.ones_like(x), torch.zeros(2, 3), torch.tensor([5, 9]))
    assert x0.abs().max().item() == pytest.approx(1.0)


def test_noise_level_condition_and_beta_sigma():
    d = GaussianDiffusion(linear_betas(100), time_condition="noise_level", sigma="beta")
    t = torch.tensor([0, 50, 99])
    assert torch.allclose(d.model_condition(t), d.alphas_cumprod[t].sqrt() * NOISE_LEVEL_SCALE)
    assert torch.allclose(d.sampling_std, linear_betas(100).float().sqrt())
    with pytest.raises(ValueError, match="time_condition"):
        GaussianDiffusion(linear_betas(10), time_condition="sigma")


def test_coefficients_are_not_in_state_dict(diffusion):
    assert diffusion.state_dict() == {}
    assert diffusion.betas.dtype == torch.float32


def test_golden_training_loop():
    """Three AdamW steps of a tiny float64 MLP on fixed data give these exact losses."""
    torch.manual_seed(0)
    d = GaussianDiffusion(linear_betas(100)).double()
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    model = lambda x, c: net(torch.cat([x, c[:, None] / 100], dim=1))  # noqa: E731
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    x0 = torch.linspace(-1, 1, 16, dtype=torch.float64).reshape(8, 2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(3):
        t = torch.randint(0, 100, (8,), generator=g)
        noise = torch.randn(8, 2, generator=g, dtype=torch.float64)
        loss = d.loss(model, x0, t=t, noise=noise).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses == pytest.approx(GOLDEN, abs=1e-6)


GOLDEN = [0.7957505964823925, 0.8652528921534428, 1.8058072242135033]  # recorded from this loop
