import pytest
import torch

from ddpm.diffusion import NOISE_LEVEL_SCALE, GaussianDiffusion
from ddpm.schedules import linear_betas, mittal_betas


@pytest.fixture
def diffusion():
    return GaussianDiffusion(linear_betas(1000))


@pytest.fixture
def one_thread():
    # Small tensors, many steps: a second OpenMP thread only waits on the shared cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussian_oracle(diffusion: GaussianDiffusion, m: torch.Tensor, s: torch.Tensor):
    """The exact eps-predictor E[eps | x_t] for data x_0 ~ N(m, diag(s^2)), step-conditioned.

    x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps is Gaussian, so E[eps | x_t] is linear regression:
    sqrt(1 - ab) (x_t - sqrt(ab) m) / (ab s^2 + 1 - ab). With s = 0 (data at m) it is
    (x_t - sqrt(ab) m) / sqrt(1 - ab).
    """

    def denoiser(x_t, cond):
        assert diffusion.time_condition == "step"
        ab = diffusion.alphas_cumprod[cond.long()].reshape(-1, *([1] * (x_t.ndim - 1)))
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * m) / (ab * s**2 + 1 - ab)

    return denoiser


def chain_moments(betas: torch.Tensor, m: torch.Tensor, s: torch.Tensor, sigma: str) -> tuple[torch.Tensor, ...]:
    """Mean and variance of Algorithm 2's output for N(m, s^2) data and the exact eps, in float64.

    Every step is affine, x_{t-1} = c1 x_t + c0 + sigma_t z with eq. (11) for the mean, so the
    moments follow from x_T ~ N(0, 1) by the recursion mu <- c1 mu + c0, v <- c1^2 v + sigma_t^2.
    """
    betas, m, s2 = betas.double(), m.double(), s.double() ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    mu, v = torch.zeros_like(m), torch.ones_like(m)
    for t in reversed(range(len(betas))):
        beta, ab = betas[t], alphas_cumprod[t]
        ab_prev = alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64)
        gain = (1 - ab).sqrt() / (ab * s2 + 1 - ab)  # eps = gain (x_t - sqrt(ab) m)
        k = beta / (1 - ab).sqrt()  # eq. (11): (x_t - k eps) / sqrt(alpha_t)
        c1, c0 = (1 - k * gain) / (1 - beta).sqrt(), k * gain * ab.sqrt() * m / (1 - beta).sqrt()
        var = beta * (1 - ab_prev) / (1 - ab) if sigma == "posterior" else beta
        mu, v = c1 * mu + c0, c1**2 * v + (var if t > 0 else 0.0)  # no noise at the last step
    return mu, v


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


def test_oracle_sampling_follows_q_at_every_step(diffusion, one_thread):
    """Data at a point x0, exact eps, sigma = beta tilde: the reverse chain is q(x_{t-1} | x_t, x0),
    so every x_t it passes through is distributed as q(x_t | x0) = N(sqrt(ab_t) x0, 1 - ab_t)."""
    x0 = torch.tensor([0.3, -0.8, 0.5])
    n = 2000
    steps = diffusion.sample_progressive(
        gaussian_oracle(diffusion, x0, 0 * x0), (n, 3), torch.Generator().manual_seed(0)
    )
    seen = []
    for t, x_t in steps:
        if t < 0:
            assert torch.allclose(x_t, x0.expand(n, 3), atol=1e-3)
            break
        ab = diffusion.alphas_cumprod[t].double()
        z = (x_t.double() - ab.sqrt() * x0) / (1 - ab).sqrt()  # ~ N(0, 1), 6000 values
        seen.append(t)
        assert abs(z.mean().item()) < 5 / (3 * n) ** 0.5, t
        assert abs(z.var().item() - 1) < 5 * (2 / (3 * n)) ** 0.5, t
    assert seen == list(range(999, -1, -1))


@pytest.mark.parametrize("sigma", ["posterior", "beta"])
def test_ancestral_sampling_of_gaussian_data_matches_closed_form(sigma, one_thread):
    """Data N(m, s^2) per dimension, exact eps: Algorithm 2 gives the moments of its closed form,
    and these are (m, s^2) up to the discretisation: mean within 1e-4, variance within 2% for s >= 0.5
    (at s = 0.02, near sqrt(beta_1), the chain ends at 0.67 s^2 with sigma = beta tilde, 0.94 s^2 with beta)."""
    betas = linear_betas(1000)
    diffusion = GaussianDiffusion(betas, sigma=sigma)
    m, s = torch.tensor([1.5, -0.5, 0.3]), torch.tensor([0.5, 1.0, 0.02])
    n = 4000
    x = diffusion.sample(gaussian_oracle(diffusion, m, s), (n, 3), torch.Generator().manual_seed(0)).double()
    mean, var = chain_moments(betas, m, s, sigma)
    assert torch.allclose(mean, m.double(), atol=1e-4)
    assert torch.allclose(var[:2], s[:2].double() ** 2, rtol=0.02)
    # The sampler realises that chain: five standard errors of the sample mean and variance.
    assert ((x.mean(0) - mean).abs() < 5 * (var / n).sqrt()).all(), (x.mean(0), mean)
    assert ((x.var(0) / var - 1).abs() < 5 * (2 / n) ** 0.5).all(), (x.var(0), var)
    # Common random numbers: every step is affine in (x_t, m), so the same seed with data shifted
    # by delta moves every sample by exactly the closed-form mean's shift (here 1 - 2e-5 times delta).
    delta = torch.tensor([1.0, -2.0, 0.5])
    shift = chain_moments(betas, m + delta, s, sigma)[0] - mean
    a, b = (
        diffusion.sample(gaussian_oracle(diffusion, mu, s), (64, 3), torch.Generator().manual_seed(1))
        for mu in (m, m + delta)
    )
    assert torch.allclose((b - a).double(), shift.expand(64, 3), atol=1e-4)


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


def test_infilling_conditions_every_step_on_the_noised_known_frames():
    """Replacement method: at each step the kept frames of x_t are a fresh forward sample of the
    originals, q(x_t | known) = N(sqrt(ab_t) known, 1 - ab_t), and that x_t is what the model sees."""
    d = GaussianDiffusion(linear_betas(50))
    n = 200
    known = 2 + torch.randn(n, 8, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(n, 8, 3)
    mask[:, :3] = 1
    seen = []

    def denoiser(x, cond):
        seen.append(x.clone())
        return 0.5 * x  # anything: the kept frames must not depend on it

    steps = d.sample_progressive(denoiser, (n, 8, 3), torch.Generator().manual_seed(0), known=known, mask=mask)
    yielded = [(t, x.clone()) for t, x in steps]
    assert [t for t, _ in yielded] == list(range(49, -1, -1)) + [-1]
    for (t, x_t), model_input in zip(yielded, seen, strict=False):
        assert torch.equal(x_t, model_input), t
        ab = d.alphas_cumprod[t].double()
        z = (x_t[:, :3].double() - ab.sqrt() * known[:, :3]) / (1 - ab).sqrt()  # ~ N(0, 1), 1800 values
        assert abs(z.mean().item()) < 5 / z.numel() ** 0.5, t
        assert abs(z.var().item() - 1) < 5 * (2 / z.numel()) ** 0.5, t
    assert len(seen) == 50 and torch.equal(yielded[-1][1][:, :3], known[:, :3])


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
    switched = GaussianDiffusion(linear_betas(100))  # set_sigma: the same as building it with that sigma
    switched.set_sigma("beta")
    assert torch.allclose(switched.sampling_std, d.sampling_std, rtol=1e-6) and switched.sigma == "beta"
    switched.set_sigma("posterior")
    assert torch.allclose(switched.sampling_std, GaussianDiffusion(linear_betas(100)).sampling_std, rtol=1e-6)


@pytest.mark.parametrize("condition", ["step", "noise_level", "continuous_noise_level"])
@pytest.mark.parametrize("scale", [1.0, 5000.0])
def test_step_of_condition_inverts_model_condition(condition, scale):
    """Mittal's schedule (betas from 1e-6: the levels of the first steps differ by ~5e-7)."""
    d = GaussianDiffusion(mittal_betas(1000, 1e-6, 0.01), time_condition=condition, noise_level_scale=scale)
    t = torch.arange(1000).flip(0)
    assert torch.equal(d.step_of_condition(d.model_condition(t)), t)


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


class Recorder:
    """A denoiser(x_t, cond, x_self_cond=None) that records its inputs and returns ``eps`` (the true noise)."""

    def __init__(self, eps: torch.Tensor):
        self.eps, self.calls = eps, []

    def __call__(self, x_t, cond, x_self_cond=None):
        self.calls.append((x_t.clone(), cond.clone(), None if x_self_cond is None else x_self_cond.clone()))
        return self.eps


@pytest.mark.parametrize("condition", ["noise_level", "continuous_noise_level"])
def test_self_conditioned_loss_reads_the_first_pass_x_start(condition):
    """With probability 1 the second pass reads x_0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) of the first:
    with the true noise as the first pass's answer, that is x_start itself."""
    d = GaussianDiffusion(mittal_betas(1000, 1e-6, 0.01), time_condition=condition)
    x_start, noise = torch.randn(5, 4, 3), torch.randn(5, 4, 3)
    t = torch.tensor([0, 10, 300, 700, 999])
    net = Recorder(noise)
    loss = d.loss(net, x_start, t=t, noise=noise, generator=torch.Generator().manual_seed(0), self_condition=1.0)
    (x1, c1, s1), (x2, c2, s2) = net.calls
    assert s1 is None and torch.equal(x1, x2) and torch.equal(c1, c2)
    assert torch.allclose(s2, x_start, atol=2e-4)
    assert torch.allclose(loss, torch.zeros(5))
    # Probability 0: one plain call, no estimate.
    net = Recorder(noise)
    d.loss(net, x_start, t=t, noise=noise, generator=torch.Generator().manual_seed(0))
    assert len(net.calls) == 1


def test_self_condition_probability_is_drawn_per_batch():
    d = GaussianDiffusion(linear_betas(100))
    x_start, generator = torch.randn(4, 2), torch.Generator().manual_seed(0)
    with_estimate = 0
    for _ in range(400):
        net = Recorder(torch.zeros(4, 2))
        d.loss(net, x_start, generator=generator, self_condition=0.5)
        assert len(net.calls) in (1, 2) and net.calls[-1][2] is not None  # the trained pass always gets an input
        with_estimate += len(net.calls) == 2 and bool(net.calls[-1][2].abs().sum() > 0)
        assert len(net.calls) == 2 or net.calls[-1][2].abs().sum() == 0  # without the first pass: zeros
    assert 0.44 < with_estimate / 400 < 0.56  # binomial(400, 0.5): std 0.025


def test_self_conditioned_loss_does_not_differentiate_the_first_pass():
    """Chen et al.: the estimate is a stop-gradient input; the gradient is that of the second pass alone."""
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 3)
    d = GaussianDiffusion(linear_betas(100))

    def denoiser(x_t, cond, x_self_cond=None):
        estimate = torch.zeros_like(x_t) if x_self_cond is None else x_self_cond
        return net(torch.cat([x_t, estimate], dim=-1))

    x_start, noise, t = torch.randn(8, 3), torch.randn(8, 3), torch.randint(0, 100, (8,))
    d.loss(denoiser, x_start, t=t, noise=noise, self_condition=1.0).sum().backward()
    got = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    x_t = d.q_sample(x_start, t, noise)
    with torch.no_grad():
        estimate = d.predict_start_from_noise(x_t, t, denoiser(x_t, t.float()))
    (noise - denoiser(x_t, t.float(), estimate)).square().mean(dim=1).sum().backward()
    for g, p in zip(got, net.parameters(), strict=True):
        assert torch.allclose(g, p.grad, atol=1e-6)


def test_self_conditioning_hands_each_call_the_previous_x_start():
    """While sampling, call k reads the x_0 predicted at call k - 1 (none at the first)."""
    from ddpm.diffusion import SelfConditioning
    from ddpm.samplers import DDIMSampler

    d = GaussianDiffusion(mittal_betas(1000, 1e-6, 0.01), time_condition="noise_level")
    net = Recorder(None)
    net_eps = []

    def denoiser(x_t, cond, x_self_cond=None):
        net(x_t, cond, x_self_cond)
        net_eps.append(0.3 * x_t + 0.01 * cond.reshape(-1, 1, 1))
        return net_eps[-1]

    DDIMSampler(steps=5).sample(d, SelfConditioning(d, denoiser), (2, 4, 3), torch.Generator().manual_seed(0))
    assert len(net.calls) == 5 and net.calls[0][2] is None
    for (x_prev, c_prev, _), eps_prev, (_, _, estimate) in zip(net.calls, net_eps, net.calls[1:]):
        t_prev = d.step_of_condition(c_prev)
        assert torch.allclose(estimate, d.predict_start_from_noise(x_prev, t_prev, eps_prev), atol=1e-5)


def _loss_as_seen(diffusion, x_start, noise, t):
    """The per-example loss of a fixed affine eps network, with the x_t and condition it was shown and its eps."""
    seen = {}

    def net(x_t, cond):
        seen["x_t"], seen["cond"] = x_t, cond
        return 0.7 * x_t + 0.1

    loss = diffusion.loss(net, x_start, t=t, noise=noise, generator=torch.Generator().manual_seed(3))
    return loss, seen["x_t"], seen["cond"], net(seen["x_t"], seen["cond"])


@pytest.mark.parametrize("condition", ["noise_level", "continuous_noise_level"])
def test_v_loss_weight_is_the_error_of_v(condition):
    """loss_weight=v: per example ||v - v_hat||^2 with v = sqrt(ab) eps - sqrt(1 - ab) x_0 and v_hat made
    of the network's eps (x_0 hat from it), at the level x_t was built from; eps: the plain eps error."""
    torch.manual_seed(0)
    v = GaussianDiffusion(mittal_betas(100, 1e-4, 0.1), time_condition=condition, loss_weight="v")
    plain = GaussianDiffusion(mittal_betas(100, 1e-4, 0.1), time_condition=condition)
    x_start, noise, t = torch.randn(6, 4, 3), torch.randn(6, 4, 3), torch.tensor([0, 10, 40, 70, 90, 99])
    got, x_t, cond, eps_hat = _loss_as_seen(v, x_start, noise, t)
    ab = (cond / v.noise_level_scale).square().reshape(-1, 1, 1)  # alpha_bar of each example's level
    x0_hat = (x_t - (1 - ab).sqrt() * eps_hat) / ab.sqrt()
    v_true, v_hat = ab.sqrt() * noise - (1 - ab).sqrt() * x_start, ab.sqrt() * eps_hat - (1 - ab).sqrt() * x0_hat
    assert torch.allclose(got, (v_true - v_hat).square().mean(dim=(1, 2)), rtol=1e-4)
    base = _loss_as_seen(plain, x_start, noise, t)[0]
    assert torch.allclose(base, (noise - eps_hat).square().mean(dim=(1, 2)))
    assert float(got[-1] / base[-1]) > 10  # the noisiest step counts most
    with pytest.raises(ValueError, match="loss_weight must be 'eps', 'v' or 'min_snr'"):
        GaussianDiffusion(mittal_betas(10, 1e-4, 0.1), loss_weight="x0")


@pytest.mark.parametrize("condition", ["noise_level", "continuous_noise_level"])
def test_min_snr_loss_weight_is_the_x0_error_times_the_clamped_snr(condition):
    """loss_weight=min_snr (Hang et al. 2023): per example min(SNR, gamma) ||x_0 - x_0 hat||^2, x_0 hat made
    of the network's eps at the level x_t was built from; the noisy steps (SNR < gamma) keep the eps loss."""
    torch.manual_seed(0)
    gamma, betas = 2.0, mittal_betas(100, 1e-4, 0.1)
    weighted = GaussianDiffusion(betas, time_condition=condition, loss_weight="min_snr", min_snr_gamma=gamma)
    plain = GaussianDiffusion(betas, time_condition=condition)
    x_start, noise, t = torch.randn(6, 4, 3), torch.randn(6, 4, 3), torch.tensor([0, 5, 20, 50, 80, 99])
    got, x_t, cond, eps_hat = _loss_as_seen(weighted, x_start, noise, t)
    ab = (cond / weighted.noise_level_scale).square().double()
    if condition == "noise_level":  # the discrete levels are the schedule's own alpha_bar_t
        assert torch.allclose(ab, torch.cumprod(1 - betas.double(), 0)[t], rtol=1e-5)
    snr, ab_ = ab / (1 - ab), ab.reshape(-1, 1, 1)
    x0_hat = (x_t.double() - (1 - ab_).sqrt() * eps_hat.double()) / ab_.sqrt()
    x0_error = (x_start.double() - x0_hat).square().mean(dim=(1, 2))
    assert torch.allclose(got.double(), snr.clamp(max=gamma) * x0_error, rtol=1e-3)
    base = _loss_as_seen(plain, x_start, noise, t)[0]
    noisy = snr < gamma
    assert 0 < noisy.sum() < len(t)  # both regimes are exercised
    assert torch.allclose(got[noisy], base[noisy])
    assert (got[~noisy] < base[~noisy]).all() and float(got[0] / base[0]) < 0.01  # the cleanest step counts least
    with pytest.raises(ValueError, match="min_snr_gamma must be a positive SNR"):
        GaussianDiffusion(mittal_betas(10, 1e-4, 0.1), loss_weight="min_snr", min_snr_gamma=0.0)


@pytest.mark.parametrize("condition", ["noise_level", "continuous_noise_level"])
def test_input_perturbation_builds_x_t_from_perturbed_noise_and_asks_for_the_noise(condition):
    """input_perturbation=gamma (Ning et al. 2023): with ``perturb``, x_t is built from noise + gamma xi, xi
    the generator's next normal draw, at the level the network is told, and the target stays the noise;
    without ``perturb`` (validation) or with gamma = 0 the loss is the plain one, drawing nothing more."""
    torch.manual_seed(0)
    betas, gamma = mittal_betas(100, 1e-4, 0.1), 0.3
    plain = GaussianDiffusion(betas, time_condition=condition)
    perturbed = GaussianDiffusion(betas, time_condition=condition, input_perturbation=gamma)
    x_start, noise, t = torch.randn(6, 4, 3), torch.randn(6, 4, 3), torch.tensor([0, 10, 40, 70, 90, 99])
    seen = []

    def net(x_t, cond):
        seen.append((x_t, cond))
        return 0.7 * x_t + 0.1

    def loss(diffusion, perturb):
        generator = torch.Generator().manual_seed(3)
        return diffusion.loss(net, x_start, t=t, noise=noise, generator=generator, perturb=perturb)

    got = loss(perturbed, True)
    x_t, cond = seen[-1]
    xi = torch.randn(x_start.shape, generator=torch.Generator().manual_seed(3))
    level = (cond / perturbed.noise_level_scale).reshape(-1, 1, 1)
    assert torch.allclose(x_t, level * x_start + (1 - level.square()).sqrt() * (noise + gamma * xi), atol=1e-6)
    # the target: noise, not noise + gamma xi
    assert torch.allclose(got, (noise - net(x_t, cond)).square().mean(dim=(1, 2)))
    base = loss(plain, False)
    assert not torch.allclose(got, base)
    assert torch.equal(loss(perturbed, False), base) and torch.equal(loss(plain, True), base)
    with pytest.raises(ValueError, match="input_perturbation must be a number >= 0"):
        GaussianDiffusion(betas, input_perturbation=-0.1)
