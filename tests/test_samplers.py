"""Samplers against diffusers' schedulers, against ancestral sampling, and on Gaussian data with the exact predictor."""

import copy
import math

import pytest
import torch
from hydra.utils import instantiate

from ddpm.diffusion import GaussianDiffusion
from ddpm.module import DiffusionModule
from ddpm.samplers import (
    AncestralSampler,
    DDIMSampler,
    DPMSolverPP2MSampler,
    ReconstructionGuided,
    repaint_schedule,
)
from ddpm.schedules import linear_betas
from tests.helpers import compose_config, compose_train, sample_cfg


def conditions() -> list[str]:
    """Every ``time_condition`` of this ``GaussianDiffusion``: the step and the noise level(s)."""
    names = ["step", "noise_level"]
    try:  # WaveGrad's continuous level, where the diffusion offers it: sampled at sqrt(ab_t) too
        GaussianDiffusion(linear_betas(2), time_condition="continuous_noise_level")
    except ValueError:
        return names
    return [*names, "continuous_noise_level"]


CONDITIONS = conditions()


def betas(timesteps: int) -> torch.Tensor:
    """Ho et al.'s linear betas rescaled to ``timesteps`` steps (x_T is noise for any T), as improved-diffusion."""
    return linear_betas(timesteps, 0.1 / timesteps, 20 / timesteps)


def gaussian_oracle(diffusion: GaussianDiffusion, mean: float, std: float, error: float = 0.0):
    """The exact eps-predictor for data N(mean, std^2) per coordinate, plus ``error`` * tanh(2 x).

    x_t ~ N(sqrt(ab) mean, ab std^2 + 1 - ab), so E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mean) / var.
    """

    def denoiser(x, cond):
        ab = diffusion.alphas_cumprod.double()[diffusion.step_of_condition(cond)].reshape(-1, *[1] * (x.ndim - 1))
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * mean) / (ab * std**2 + 1 - ab)
        return (eps + error * torch.tanh(2 * x)).to(x.dtype)

    return denoiser


def trajectory(sampler, diffusion, denoiser, shape, seed=0, **infill):
    return list(sampler.sample_progressive(diffusion, denoiser, shape, torch.Generator().manual_seed(seed), **infill))


# ----- reference: diffusers -----
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("spacing, diffusers_spacing", [("uniform", "leading"), ("trailing", "trailing")])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])  # 0.5: eta and eta^2 differ
def test_ddim_matches_diffusers(eta, spacing, diffusers_spacing, condition, clip):
    diffusers = pytest.importorskip("diffusers")
    d = GaussianDiffusion(linear_betas(1000), time_condition=condition, clip_x_start=clip)
    net = gaussian_oracle(d, 0.3, 0.5 if not clip else 1.5, error=0.05)  # std 1.5: x_0 leaves [-1, 1]
    shape = (4, 3, 5)
    ours = trajectory(DDIMSampler(20, eta, spacing), d, net, shape)
    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        trained_betas=d.betas.numpy(),
        clip_sample=clip,
        timestep_spacing=diffusers_spacing,
        steps_offset=0,
        set_alpha_to_one=True,
    )
    scheduler.alphas_cumprod = d.alphas_cumprod.clone()  # the same float32 alpha_bar as ours
    scheduler.set_timesteps(20)
    assert [t for t, _ in ours[:-1]] == scheduler.timesteps.tolist()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator)  # same draws in the same order as ours
    for (_, x_ours), t in zip(ours, scheduler.timesteps.tolist()):
        assert torch.allclose(x_ours, x, atol=1e-5, rtol=0)
        eps = net(x, d.model_condition(torch.full((shape[0],), t)))
        x = scheduler.step(eps, t, x, eta=eta, generator=generator, use_clipped_model_output=True).prev_sample
    assert torch.allclose(ours[-1][1], x, atol=1e-5, rtol=0)
    if clip:  # clipping was exercised: without it the result differs
        unclipped = GaussianDiffusion(linear_betas(1000), time_condition=condition)
        assert not torch.allclose(DDIMSampler(20, eta, spacing).sample(unclipped, net, shape, seed_gen()), x, atol=1e-3)


def seed_gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sde", [False, True])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("steps", [5, 10, 25])
def test_dpmpp_2m_matches_diffusers(steps, condition, clip, sde):
    diffusers = pytest.importorskip("diffusers")
    d = GaussianDiffusion(linear_betas(1000), time_condition=condition, clip_x_start=clip)
    net = gaussian_oracle(d, 0.3, 0.5 if not clip else 1.5, error=0.05)
    shape = (4, 3, 5)
    ours = trajectory(DPMSolverPP2MSampler(steps, sde=sde), d, net, shape)
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        trained_betas=d.betas.numpy(),
        algorithm_type="sde-dpmsolver++" if sde else "dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,
        thresholding=clip,  # with sample_max_value 1 the dynamic threshold is clipping to [-1, 1]
        sample_max_value=1.0,
    )
    scheduler.alphas_cumprod = d.alphas_cumprod.clone()
    scheduler.set_timesteps(steps)
    assert [t for t, _ in ours[:-1]] == scheduler.timesteps.tolist()
    generator = seed_gen()
    x = torch.randn(shape, generator=generator)  # the SDE's noise: the same draws in the same order
    for (_, x_ours), t in zip(ours, scheduler.timesteps):
        assert torch.allclose(x_ours, x, atol=1e-5, rtol=0)
        eps = net(x, d.model_condition(torch.full((shape[0],), int(t))))
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    assert torch.allclose(ours[-1][1], x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 20, 33, 50, 100, 250, 333, 999])
def test_timesteps_match_diffusers(steps):
    diffusers = pytest.importorskip("diffusers")
    ddim = diffusers.DDIMScheduler(num_train_timesteps=1000, steps_offset=0)
    dpm = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000)
    for spacing, theirs in [("uniform", "leading"), ("trailing", "trailing")]:
        ddim.register_to_config(timestep_spacing=theirs)
        ddim.set_timesteps(steps)
        assert DDIMSampler(steps, spacing=spacing).timesteps(1000) == ddim.timesteps.tolist()
    dpm.set_timesteps(steps)
    assert DPMSolverPP2MSampler(steps).timesteps(1000) == dpm.timesteps.tolist()


@pytest.mark.parametrize(
    "sampler",
    [DDIMSampler(s, spacing=p) for s in (1, 2, 20, 999, 1000) for p in ("uniform", "quadratic", "trailing")]
    + [DPMSolverPP2MSampler(s) for s in (1, 20, 999, 1000)],
    ids=repr,
)
def test_timesteps_are_distinct_decreasing_and_as_many_as_steps(sampler):
    ts = sampler.timesteps(1000)
    assert len(ts) == sampler.steps and all(a > b for a, b in zip(ts, ts[1:])) and 0 <= ts[-1] and ts[0] <= 999


def test_quadratic_spacing_is_the_ddim_papers():
    # int((i sqrt(0.8 T) / (S - 1))^2): T = 1000, S = 5 -> 0, 50, 200, 450, 800 (all distinct, unchanged)
    assert DDIMSampler(5, spacing="quadratic").timesteps(1000) == [800, 450, 200, 50, 0]
    # S = 10: (i sqrt(800) / 9)^2 = 9.88, 39.5, 88.9, ... are truncated, as in the paper's code, not rounded
    assert DDIMSampler(10, spacing="quadratic").timesteps(1000) == [800, 632, 483, 355, 246, 158, 88, 39, 9, 0]


# ----- ancestral sampling -----
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("condition", CONDITIONS)
def test_ancestral_visits_every_step_and_ends_on_the_kept_region(condition, clip):
    # GaussianDiffusion.sample_progressive delegates here; its closed-form tests (test_diffusion.py)
    # cover the values, this one the step order and the final paste.
    d = GaussianDiffusion(betas(30), time_condition=condition, clip_x_start=clip)
    net = gaussian_oracle(d, 0.3, 1.5, error=0.1)
    known, mask = torch.randn(3, 6, 2), (torch.arange(6) < 2).float()[None, :, None].expand(3, 6, 2)
    for infill in ({}, {"known": known, "mask": mask}):
        ours = trajectory(AncestralSampler(), d, net, (3, 6, 2), seed=5, **infill)
        assert [t for t, _ in ours] == list(range(29, -2, -1))
        if infill:
            torch.testing.assert_close(ours[-1][1][:, :2], known[:, :2], rtol=0, atol=0)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_ddim_every_step_eta1_is_ancestral(condition):
    """sigma(eta = 1)^2 of eq. (16) is beta tilde and the means agree: the same path for the same draws."""
    for clip in (False, True):
        d = GaussianDiffusion(betas(100), time_condition=condition, clip_x_start=clip)
        net = gaussian_oracle(d, 0.3, 1.5, error=0.1)
        ddim = DDIMSampler(100, eta=1.0).sample(d, net, (64, 3), seed_gen(1))
        ancestral = AncestralSampler().sample(d, net, (64, 3), seed_gen(1))
        assert torch.allclose(ddim, ancestral, atol=1e-4)


def test_ddim_every_step_eta1_has_the_moments_of_ancestral():
    """Both against the exact moments of the ancestral chain, propagated in float64.

    With the exact predictor on N(0.3, 0.5^2) an ancestral step is affine plus noise, x_{t-1} = a x_t
    + b + sigma z, so mean and variance follow m <- a m + b, v <- a^2 v + sigma^2 from m = 0, v = 1.
    (At T = 100 they end at 0.2995 and 0.468^2, not at the data: the chain's own discretization.)
    """
    d = GaussianDiffusion(betas(100))
    net = gaussian_oracle(d, 0.3, 0.5)
    d64 = GaussianDiffusion(betas(100)).double()
    m, v = torch.zeros(1, 1, dtype=torch.float64), 1.0
    for t in reversed(range(100)):
        steps = torch.tensor([t])
        b = d64.p_mean_std(net, torch.zeros_like(m), steps)[0]
        a = d64.p_mean_std(net, torch.ones_like(m), steps)[0] - b
        m, v = a * m + b, a.square() * v + d64.sampling_std[t] ** 2
    mean, std = m.item(), v.sqrt().item()
    n = 20_000  # standard errors: 0.0033 (mean), 0.0024 (std)
    ddim = DDIMSampler(100, eta=1.0).sample(d, net, (n, 1), seed_gen(2))
    ancestral = AncestralSampler().sample(d, net, (n, 1), seed_gen(3))
    for x in (ddim, ancestral):
        assert x.mean().item() == pytest.approx(mean, abs=0.013) and x.std().item() == pytest.approx(std, abs=0.01)


# ----- Gaussian data, the exact predictor -----
@pytest.mark.parametrize("spacing", ["uniform", "trailing"])
def test_ddim_20_steps_on_unit_gaussian_matches_its_closed_form(spacing):
    """Data N(mu, 1): x_t - sqrt(ab_t) mu shrinks by sqrt(ab_p ab_t) + sqrt((1 - ab_p)(1 - ab_t)) per step.

    So x_0 = mu + C (x_T - sqrt(ab_T') mu) with C the product over the steps (T' the first step):
    mean mu (1 - C sqrt(ab_T')), std C. That is DDIM's first-order error, 0.91 at 20 steps.
    """
    d = GaussianDiffusion(linear_betas(1000))
    mu = 0.5
    sampler = DDIMSampler(20, spacing=spacing)
    ab = d.alphas_cumprod.double().tolist() + [1.0]
    ts = sampler.timesteps(1000)
    c = math.prod(math.sqrt(ab[p] * ab[t]) + math.sqrt((1 - ab[p]) * (1 - ab[t])) for t, p in zip(ts, ts[1:] + [-1]))
    x = sampler.sample(d, gaussian_oracle(d, mu, 1.0), (100_000, 1), seed_gen(4))
    assert x.mean().item() == pytest.approx(mu * (1 - c * math.sqrt(ab[ts[0]])), abs=0.01)
    assert x.std().item() == pytest.approx(c, abs=0.006)
    # and it lands on the data: mean within 0.01, std within 10% (9% measured)
    assert x.mean().item() == pytest.approx(mu, abs=0.01) and x.std().item() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize(
    "sampler, std_tolerance",
    [
        (DDIMSampler(20, spacing="trailing"), 0.15),
        (DDIMSampler(50), 0.06),
        (DPMSolverPP2MSampler(20), 0.05),
        (DPMSolverPP2MSampler(20, sde=True), 0.05),
    ],
    ids=repr,
)
def test_few_steps_land_on_gaussian_data(sampler, std_tolerance):
    """Data N(0.3, 0.5^2); measured std 0.432 (DDIM 20 trailing), 0.472 (DDIM 50), 0.477 (DPM++ 20),
    SDE-DPM++ 20: 0.485."""
    d = GaussianDiffusion(linear_betas(1000))
    x = sampler.sample(d, gaussian_oracle(d, 0.3, 0.5), (50_000, 1), seed_gen(5))
    assert x.mean().item() == pytest.approx(0.3, abs=0.005)
    assert x.std().item() == pytest.approx(0.5, rel=std_tolerance)


# ----- infilling -----
SAMPLERS = [AncestralSampler(), AncestralSampler(3, 4), DDIMSampler(10), DDIMSampler(10, 1.0, "trailing")]
SAMPLERS += [DPMSolverPP2MSampler(8), DPMSolverPP2MSampler(8, sde=True)]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_infilling_replaces_kept_region_by_forward_noise_at_each_step(sampler):
    d = GaussianDiffusion(betas(40))
    n = 4000
    known = torch.randn(n, 4)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0]).expand(n, 4)
    steps = trajectory(sampler, d, gaussian_oracle(d, 0.0, 1.0), (n, 4), known=known, mask=mask)
    assert [t for t, _ in steps[:-1]] == sampler.timesteps(40)
    for t, x in steps[:-1]:  # kept coordinates ~ q(x_t | known): standardized, N(0, 1)
        ab = d.alphas_cumprod[t]
        z = (x[:, :2] - ab.sqrt() * known[:, :2]) / (1 - ab).sqrt()
        assert abs(z.mean().item()) < 0.04 and z.std().item() == pytest.approx(1.0, abs=0.04)
    final = steps[-1][1]
    assert torch.equal(final[:, :2], known[:, :2]) and not torch.allclose(final[:, 2:], known[:, 2:])


def correlated_oracle(diffusion: GaussianDiffusion, rho: float):
    """Exact eps-predictor for 2-D data N(0, [[1, rho], [rho, 1]]): sqrt(1 - ab) S^-1 x_t, S = ab C + (1 - ab) I."""

    def denoiser(x, cond):
        ab = diffusion.alphas_cumprod[diffusion.step_of_condition(cond)][:, None]
        a, b = ab + (1 - ab), ab * rho  # S = [[a, b], [b, a]]
        inverse = torch.stack([a * x[:, 0:1] - b * x[:, 1:2], a * x[:, 1:2] - b * x[:, 0:1]], 1).squeeze(-1)
        return (1 - ab).sqrt() * inverse / (a * a - b * b)

    return denoiser


def test_repaint_keeps_kept_frames_and_approaches_the_true_conditional():
    """Keep x_0 = 1 of N(0, [[1, .9], [.9, 1]]); x_1 | x_0 is N(0.9, 0.19). Replacement alone misses it."""
    d = GaussianDiffusion(betas(50))
    n = 2000
    known, mask = torch.tensor([1.0, 0.0]).expand(n, 2), torch.tensor([1.0, 0.0]).expand(n, 2)
    net = correlated_oracle(d, 0.9)
    plain = AncestralSampler().sample(d, net, (n, 2), seed_gen(6), known=known, mask=mask)
    repaint = AncestralSampler(resample=5, jump=5).sample(d, net, (n, 2), seed_gen(6), known=known, mask=mask)
    assert torch.equal(plain[:, 0], known[:, 0]) and torch.equal(repaint[:, 0], known[:, 0])
    assert abs(plain[:, 1].mean().item() - 0.9) > 0.25  # 0.60 measured, variance 0.27
    assert repaint[:, 1].mean().item() == pytest.approx(0.9, abs=0.1)  # 0.835 measured
    assert repaint[:, 1].var().item() == pytest.approx(0.19, abs=0.04)  # 0.166 measured


@pytest.mark.parametrize("jump", [1, 3, 10])
def test_repaint_with_resample_1_is_plain_replacement(jump):
    d = GaussianDiffusion(betas(30))
    known, mask = torch.randn(3, 5), (torch.arange(5) < 2).float().expand(3, 5)
    net = gaussian_oracle(d, 0.0, 1.0, error=0.1)
    ours = AncestralSampler(resample=1, jump=jump).sample(d, net, (3, 5), seed_gen(7), known=known, mask=mask)
    assert torch.equal(ours, d.sample(net, (3, 5), seed_gen(7), known=known, mask=mask))


@pytest.mark.parametrize("jump, resample", [(1, 1), (10, 10), (5, 3), (3, 5)])
def test_repaint_schedule_is_diffusers(jump, resample):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.RePaintScheduler(num_train_timesteps=50)
    scheduler.set_timesteps(50, jump_length=jump, jump_n_sample=resample)
    assert repaint_schedule(50, jump, resample) == scheduler.timesteps.tolist()
    evaluations = 50 + (resample - 1) * jump * len(range(0, 50 - jump, jump))
    assert AncestralSampler(resample, jump).evaluations(GaussianDiffusion(betas(50))) == evaluations


# ----- reconstruction guidance -----
def test_reconstruction_guidance_is_ho_et_als_eq7_for_a_linear_network():
    """eps = x A gives x_0 = x M with M = (I - sigma A) / alpha, and the gradient of the kept region's
    error || m (known - x M) ||^2 in closed form: -2 (m (known - x M)) M^T."""
    d = GaussianDiffusion(linear_betas(100), time_condition="noise_level")
    A = 0.3 * torch.randn(4, 4, generator=seed_gen(8))
    known, x = torch.randn(3, 4, generator=seed_gen(9)), torch.randn(3, 4, generator=seed_gen(10))
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0]).expand(3, 4)
    t, weight = 40, 2.5
    eps = ReconstructionGuided(d, lambda x, cond: x @ A, known, mask, weight)(x, d.model_condition(torch.full((3,), t)))
    alpha, sigma = d.alphas_cumprod[t].sqrt(), (1 - d.alphas_cumprod[t]).sqrt()
    M = (torch.eye(4) - sigma * A) / alpha
    grad = -2 * (mask * (known - x @ M)) @ M.T
    x_start = x @ M - weight * alpha / 2 * (1 - mask) * grad
    assert torch.allclose(eps, (x - alpha * x_start) / sigma, atol=1e-5)
    assert torch.allclose(eps[:, ::2], (x @ A)[:, ::2], atol=1e-5)  # the kept region's eps is the network's
    assert not torch.allclose(eps[:, 1::2], (x @ A)[:, 1::2], atol=1e-2)


@pytest.mark.parametrize(
    "sampler", [AncestralSampler(guidance=2.0), DPMSolverPP2MSampler(40, sde=True, guidance=2.0)], ids=repr
)
def test_reconstruction_guidance_approaches_the_true_conditional(sampler):
    """Keep x_0 = 1 of N(0, [[1, .9], [.9, 1]]): x_1 | x_0 is N(0.9, 0.19). Replacement alone: mean 0.61 /
    0.63; weight 2: 0.845 / 0.189 (ancestral), 0.855 / 0.194 (SDE-DPM++ 40) measured."""
    d = GaussianDiffusion(linear_betas(1000))
    n = 2000
    known, mask = torch.tensor([1.0, 0.0]).expand(n, 2), torch.tensor([1.0, 0.0]).expand(n, 2)
    net = correlated_oracle(d, 0.9)
    guided = sampler.sample(d, net, (n, 2), seed_gen(6), known=known, mask=mask)
    plain = copy.copy(sampler)
    plain.guidance = 0.0
    replaced = plain.sample(d, net, (n, 2), seed_gen(6), known=known, mask=mask)
    assert torch.equal(guided[:, 0], known[:, 0])
    assert guided[:, 1].mean().item() == pytest.approx(0.9, abs=0.07)
    assert guided[:, 1].var().item() == pytest.approx(0.19, abs=0.03)
    assert abs(replaced[:, 1].mean().item() - 0.9) > 0.25


@pytest.mark.parametrize("make", [AncestralSampler, lambda **k: DDIMSampler(5, **k), DPMSolverPP2MSampler])
def test_guidance_leaves_unconditional_sampling_alone(make):
    d = GaussianDiffusion(betas(30))
    net = gaussian_oracle(d, 0.0, 1.0, error=0.1)
    guided = make(guidance=3.0).sample(d, net, (3, 5), seed_gen(7))
    assert torch.equal(guided, make().sample(d, net, (3, 5), seed_gen(7)))


# ----- settings and wiring -----
def test_bad_settings_are_value_errors():
    d = GaussianDiffusion(linear_betas(10))
    for make in (
        lambda: DDIMSampler(5, spacing="linear"),
        lambda: DDIMSampler(0),
        lambda: DDIMSampler(5, eta=-1),
        lambda: DDIMSampler(11).evaluations(d),
        lambda: DPMSolverPP2MSampler(11).evaluations(d),
        lambda: AncestralSampler(resample=0),
        lambda: DDIMSampler(5, guidance=-1.0),
        lambda: DPMSolverPP2MSampler(5, guidance=float("nan")),
    ):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(ValueError, match="known"):
        DDIMSampler(5).sample(d, lambda x, c: x, (1, 2), known=torch.zeros(1, 2))


@pytest.mark.parametrize("name, cls", [("ancestral", AncestralSampler), ("ddim", DDIMSampler)])
def test_sampler_group_in_sample_and_train_configs(name, cls, tmp_path):
    cfg = sample_cfg(["ckpt=x", f"sampler={name}"])
    assert isinstance(instantiate(cfg.sampler), cls)
    steps = ["sampler.steps=7"] if name == "ddim" else []
    callback = instantiate(compose_train(["experiment=digits", f"sampler={name}", *steps], tmp_path).callbacks.samples)
    assert isinstance(callback.sampler, cls) and (name != "ddim" or callback.sampler.steps == 7)


def test_default_samplers_are_fast_sde_dpmpp_and_dpmpp_config_builds(tmp_path):
    callback = instantiate(compose_train([], tmp_path).callbacks.samples).sampler
    sample_config, evaluate_cfg = sample_cfg(["ckpt=x"]), compose_config("evaluate", ["ckpt=x"])
    dpm = instantiate(sample_cfg(["ckpt=x", "sampler=dpmpp_2m"]).sampler)
    for fast in (callback, instantiate(sample_config.sampler)):
        assert isinstance(fast, DPMSolverPP2MSampler) and (fast.steps, fast.sde) == (40, True)
        assert fast.evaluations(GaussianDiffusion(betas(1000))) == 40
        assert fast.evaluations(GaussianDiffusion(betas(25))) == 25  # at most T: works for any model
    assert isinstance(instantiate(evaluate_cfg.sampler), AncestralSampler)  # the reference
    # infilling with reconstruction guidance, weight 4, whatever the sampler (README, "Samplers")
    weights = {instantiate(c.sampler).guidance for c in (sample_config, evaluate_cfg)}
    assert weights | {callback.guidance, dpm.guidance} == {4.0}
    assert isinstance(dpm, DPMSolverPP2MSampler) and dpm.steps == 20 and not dpm.sde
    for explicit in (DDIMSampler(40), DPMSolverPP2MSampler(40, sde=True)):  # without at_most_T: still an error
        with pytest.raises(ValueError, match="steps must be in"):
            explicit.evaluations(GaussianDiffusion(betas(25)))


def tiny_module() -> DiffusionModule:
    class Net(torch.nn.Module):
        sample_shape = (3,)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x, t):
            return self.w * x

    return DiffusionModule(Net(), GaussianDiffusion(linear_betas(20)), ema_decay=None)


def test_module_sample_uses_the_sampler():
    module = tiny_module()
    default = module.sample(5, seed_gen(8))
    assert torch.equal(default, module.diffusion.sample(module.denoiser, (5, 3), seed_gen(8)))
    ddim = DDIMSampler(4)
    x = module.sample(2, seed_gen(8), sampler=ddim)
    assert torch.equal(x, ddim.sample(module.diffusion, module.denoiser, (2, 3), seed_gen(8)))


def test_module_threads_self_conditioning_through_each_chain():
    """A self-conditioned network samples with its previous x_0 estimate, a fresh one per batch; training
    reads it half the time and validation always (as the sampler uses the network)."""
    from ddpm.denoisers import TransformerDDPM
    from ddpm.diffusion import SelfConditioning

    torch.manual_seed(0)
    net = TransformerDDPM((4, 3), num_layers=1, num_heads=1, mlp_dims=8, embed_channels=4, self_condition=True)
    module = DiffusionModule(net, GaussianDiffusion(linear_betas(20)), ema_decay=None)
    sampler = DDIMSampler(5, eta=0.5)
    got = module.sample(6, seed_gen(3), batch_size=3, sampler=sampler)
    chains = [sampler.sample(module.diffusion, SelfConditioning(module.diffusion, net), (3, 4, 3), seed_gen(3))]
    assert torch.allclose(got[:3], chains[0], atol=1e-6)
    plain = sampler.sample(module.diffusion, net, (3, 4, 3), seed_gen(3))  # zeros for the estimate throughout
    assert not torch.allclose(got[:3], plain, atol=1e-3)
    # Validation scores it with its estimate: the loss of two passes, not of one.
    batch = torch.randn(4, 4, 3)
    module.validation_step(batch, 0)
    from ddpm.module import record_noise

    t, noise = record_noise(batch, 20)
    steps = record_noise(torch.randn(500, 3), 10)[0]
    assert set(steps.tolist()) == set(range(10))  # every step 0 ... T - 1 is validated, the last one too
    two = module.diffusion.loss(net, batch, t=t, noise=noise, self_condition=1.0).mean()
    one = module.diffusion.loss(net, batch, t=t, noise=noise).mean()
    assert torch.allclose(module.val_loss.compute(), two) and not torch.allclose(two, one)
    seen = []  # training: the estimate with probability 0.5
    module.diffusion.loss = lambda *args, **kwargs: seen.append(kwargs["self_condition"]) or torch.zeros(4)
    module.training_step(batch, 0)
    assert seen == [0.5]


def test_module_perturbs_the_training_inputs_only():
    """The module asks for input perturbation (``diffusion.input_perturbation``) in training only: validation
    scores the network on the forward process, so val/loss stays comparable across settings."""
    module, seen = tiny_module(), []
    module.diffusion.loss = lambda *args, **kwargs: seen.append(kwargs.get("perturb", False)) or torch.zeros(4)
    batch = torch.randn(4, 3)
    module.training_step(batch, 0)
    module.validation_step(batch, 0)
    assert seen == [True, False]


def test_each_training_batch_draws_from_its_own_seed_epoch_and_index(monkeypatch):
    """Steps and noise of a batch come from (seed, rank, epoch, batch index): the same batch of a later epoch
    draws anew, and a resumed run draws what the uninterrupted one did."""
    module, epoch = tiny_module(), [0]
    monkeypatch.setattr(DiffusionModule, "current_epoch", property(lambda self: epoch[0]))
    seeds = {}
    for epoch[0], batch, module.seed in [(0, 0, 0), (0, 1, 0), (1, 0, 0), (0, 0, 1), (0, 0, 0)]:
        seeds.setdefault((epoch[0], batch, module.seed), set()).add(module.training_generator(batch).initial_seed())
    assert all(len(s) == 1 for s in seeds.values()) and len(set().union(*seeds.values())) == 4


def test_module_sample_logs_its_progress(caplog):
    import logging

    module = tiny_module()
    with caplog.at_level(logging.INFO, logger="ddpm.progress"):
        x = module.sample(5, seed_gen(8), batch_size=2, sampler=DDIMSampler(4), progress="drawing")
    assert torch.equal(x[:2], module.sample(2, seed_gen(8), sampler=DDIMSampler(4)))  # batches in order
    assert caplog.messages[-1].startswith("drawing 12/12 network evaluations (100%), 5 samples")  # 3 batches x 4


def test_sample_callback_draws_with_its_sampler(tmp_path):
    from ddpm.callbacks.sampling import SampleCallback

    calls = []

    class Module:
        codec = type("Codec", (), {"write": lambda self, x, d, name: {}})()

        def sample(self, n, generator, sampler=None, progress=None):
            calls.append(sampler)
            return torch.zeros(n, 2)

    class Trainer:
        loggers = []

    ddim = DDIMSampler(3)
    SampleCallback(str(tmp_path), n=2, sampler=ddim).draw(Trainer(), Module(), "final")
    assert calls == [ddim]


def test_sample_callback_draws_loops_from_the_period_prior(tmp_path):
    from ddpm.callbacks.sampling import SampleCallback
    from ddpm.codecs.latents import LatentCodec
    from ddpm.periods import PeriodPrior, loop_index

    drawn = []

    class Module:
        codec = LatentCodec()

        def sample(self, n, generator, sampler=None, progress=None, loops=None, periods=None):
            drawn.append((loops, periods))
            return torch.zeros(n, 4, 2)

    Module.codec.write = lambda x, d, name: {}
    Module.codec.periods = PeriodPrior([0.0, 0.0, 1.0, 0.0])  # every train sequence a 2-frame loop

    class Trainer:
        loggers = []

    SampleCallback(str(tmp_path), n=3).draw(Trainer(), Module(), "final")
    assert torch.equal(drawn[0][0], loop_index(torch.tensor([2, 2, 2]), 4))
    assert drawn[0][1].tolist() == [2, 2, 2]  # and a period-conditioned network is told them


def test_sample_py_uses_and_records_the_sampler(melody_run, tmp_path):
    """``sample(cfg)`` by default with sampler=fast, with sampler=ddim (and infilling with dpmpp_2m): the record
    names it; bad steps: ConfigError."""
    import json

    from ddpm.errors import ConfigError
    from ddpm.sampling import sample

    ckpt = melody_run[1] / "last.ckpt"

    def cfg(*overrides):
        return sample_cfg([f"ckpt={ckpt}", "n=2", f"out_dir={tmp_path}", *overrides])

    record = json.loads(sample(cfg())["record"].read_text())  # the default: sampler=fast, at most T (10) steps
    assert record["sampler"] == {
        "_target_": "ddpm.samplers.DPMSolverPP2MSampler",
        "steps": 40,
        "sde": True,
        "at_most_T": True,
        "guidance": 4.0,
    }
    assert record["network_evaluations"] == 10
    files = sample(cfg("sampler=ddim", "sampler.steps=3", "sampler.spacing=trailing"))
    record = json.loads(files["record"].read_text())
    assert record["sampler"] == {
        "_target_": "ddpm.samplers.DDIMSampler",
        "steps": 3,
        "eta": 0.0,
        "spacing": "trailing",
        "guidance": 4.0,
    }
    assert record["network_evaluations"] == 3
    record = json.loads(sample(cfg("sampler=dpmpp_2m", "sampler.steps=4", "infill=[1,3]"))["record"].read_text())
    assert record["sampler"]["steps"] == 4 and record["infill"] == [1, 3]
    with pytest.raises(ConfigError, match="steps must be in"):
        sample(cfg("sampler=ddim", "sampler.steps=100000"))
