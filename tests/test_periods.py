"""Loops: the period prior of the training sequences and sampling with a drawn period (``ddpm.periods``)."""

import numpy as np
import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.periods import Looped, PeriodPrior, infill_loops, loop_index, repeat_frames, smallest_periods
from ddpm.samplers import AncestralSampler, DDIMSampler, DPMSolverPP2MSampler
from ddpm.schedules import mittal_betas


def looped(tune_frames: int, frames: int = 16, dims: int = 3, seed: int = 0) -> torch.Tensor:
    """A random tune of ``tune_frames`` frames played again from its start to fill ``frames`` (as prepare does)."""
    tune = np.random.default_rng(seed).standard_normal((tune_frames, dims)).astype(np.float32)
    return torch.from_numpy(np.resize(tune, (frames, dims)))


def test_smallest_periods_of_looped_tunes():
    x = torch.stack([looped(w, seed=w) for w in (1, 2, 3, 5, 8, 15, 16, 20)])
    assert smallest_periods(x).tolist() == [1, 2, 3, 5, 8, 15, 0, 0]  # 16 or more frames: no repeat
    # A tune whose second half repeats its first (AA) has period 4, not its 8 frames.
    aa = looped(8)
    aa[4:8] = aa[:4]
    aa[12:] = aa[:4]
    assert smallest_periods(aa[None]).tolist() == [4]
    assert smallest_periods((aa + 1e-3 * torch.arange(16.0)[:, None])[None]).tolist() == [0]  # near is not equal


def test_prior_counts_periods_and_draws_them_in_proportion():
    x = torch.stack([looped(w, seed=k) for k, w in enumerate([4] * 30 + [6] * 10 + [16] * 60)])
    prior = PeriodPrior.fit(x)
    expected = np.zeros(16)
    expected[[0, 4, 6]] = [0.6, 0.3, 0.1]
    assert np.allclose(prior.probs.numpy(), expected)
    draws = prior.draw(20000, torch.Generator().manual_seed(0))
    shares = torch.bincount(draws, minlength=16).double() / len(draws)
    assert torch.allclose(shares, prior.probs, atol=0.012)  # binomial std <= 0.0035
    assert PeriodPrior.from_state(prior.state_dict()).probs.tolist() == prior.probs.tolist()
    with pytest.raises(ValueError, match="distribution"):
        PeriodPrior([0.5, 0.2])
    with pytest.raises(ValueError, match="distribution"):
        PeriodPrior([1.5, -0.5])  # sums to 1, but not a distribution
    with pytest.raises(ValueError, match="distribution"):
        PeriodPrior([float("nan"), 1.0])  # a crafted checkpoint's prior: refused when read, not when drawn


def test_loop_index_and_repeat_frames():
    assert loop_index(torch.tensor([0, 1, 3]), 7).tolist() == [
        [0, 1, 2, 3, 4, 5, 6],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 1, 2, 0, 1, 2, 0],
    ]
    x = torch.randn(2, 16, 3)
    out = repeat_frames(x, loop_index(torch.tensor([5, 0]), 16))
    assert torch.equal(out[0], x[0, torch.arange(16) % 5]) and torch.equal(out[1], x[1])


@pytest.mark.parametrize(
    "sampler", [AncestralSampler(), DDIMSampler(20, eta=0.5), DPMSolverPP2MSampler(20, sde=True)], ids=repr
)
def test_looped_sampling_ends_exactly_periodic_and_leaves_free_sequences_alone(sampler):
    """Every sampler returns the tied x_0 at its last step (up to the rounding of x_0 -> eps -> x_0;
    ``DiffusionModule.sample`` copies the frames at the end, so its loops are exact); a sequence with
    period 0 is drawn as without the wrapper, draw for draw."""
    torch.manual_seed(0)
    d = GaussianDiffusion(mittal_betas(1000, 1e-6, 0.01), time_condition="noise_level")
    w = torch.randn(3, 3) * 0.3

    def net(x_t, cond):  # mixes frames, so the frames of an untied sample differ
        return 0.5 * x_t + 0.1 * x_t.roll(1, dims=1) @ w + 1e-4 * cond.reshape(-1, 1, 1)

    index = loop_index(torch.tensor([3, 5, 0, 1]), 16)
    x = sampler.sample(d, Looped(d, net, index), (4, 16, 3), torch.Generator().manual_seed(1))
    assert smallest_periods(repeat_frames(x, index)).tolist() == [3, 5, 0, 1]
    assert (repeat_frames(x, index) - x).abs().max() < 1e-4 * x.abs().max()  # tied, not copied afterwards
    free = sampler.sample(d, net, (4, 16, 3), torch.Generator().manual_seed(1))
    assert torch.equal(x[2], free[2])
    gap = (repeat_frames(free, index) - free)[[0, 1, 3]].abs().amax(dim=(1, 2))
    assert (gap > 0.1 * free.abs().max()).all()  # without the wrapper nothing loops


def test_looped_keeps_the_first_occurrence_prediction():
    """Each frame's x_0 becomes its first occurrence's: eps = (x_t - sqrt(ab) x_0[i mod p]) / sqrt(1 - ab)."""
    d = GaussianDiffusion(mittal_betas(1000, 1e-6, 0.01), time_condition="noise_level")
    x_t, eps = torch.randn(2, 6, 2), torch.randn(2, 6, 2)
    t = torch.tensor([100, 700])
    cond = d.model_condition(t)
    out = Looped(d, lambda x, c: eps, loop_index(torch.tensor([2, 0]), 6))(x_t, cond)
    x_start = d.predict_start_from_noise(x_t, t, eps)
    tied = x_start[:, [0, 1, 0, 1, 0, 1]]
    tied[1] = x_start[1]
    ab = d.alphas_cumprod[t].reshape(-1, 1, 1)
    assert torch.allclose(out, (x_t - ab.sqrt() * tied) / (1 - ab).sqrt(), atol=1e-5)
    assert torch.allclose(out[1], eps[1], atol=1e-5)


def test_module_sample_draws_exact_loops_and_infills_the_loop_it_is_shown():
    from ddpm.denoisers import TransformerDDPM
    from ddpm.module import DiffusionModule

    torch.manual_seed(0)
    net = TransformerDDPM((8, 3), num_layers=1, num_heads=1, mlp_dims=8, embed_channels=4)
    module = DiffusionModule(net, GaussianDiffusion(mittal_betas(50, 1e-4, 0.2)), ema_decay=None)
    index = loop_index(torch.tensor([2, 3, 0, 7, 1]), 8)
    x = module.sample(5, torch.Generator().manual_seed(0), batch_size=2, sampler=DDIMSampler(5), loops=index)
    assert smallest_periods(x).tolist() == [2, 3, 0, 7, 1]
    # Infilling frames 2-5 of a 3-frame loop: the kept frames 0, 1, 6, 7 show it, and the middle is its copy.
    known = looped(3, frames=8)[None]
    mask = torch.ones_like(known)
    mask[:, 2:6] = 0
    keep = mask[0, :, 0].bool()
    periods, index = infill_loops(known, keep, PeriodPrior([0.0, 0.0, 0.0, 1.0, 0, 0, 0, 0]))
    assert periods.tolist() == [3] and index.tolist() == [[0, 1, 2, 0, 1, 2, 0, 1]]
    guided = DDIMSampler(5, guidance=4.0)
    x = module.sample(1, torch.Generator().manual_seed(0), known=known, mask=mask, sampler=guided, loops=index)
    assert torch.equal(x[0, [0, 1, 3, 4, 6, 7]], known[0, [0, 1, 0, 1, 0, 1]]) and smallest_periods(x).tolist() == [3]


def test_infill_loops_reads_the_kept_frames():
    """Mittal's setting on 16 frames: frames 4-11 regenerated, 0-3 and 12-15 kept."""
    keep = torch.ones(16, dtype=torch.bool)
    keep[4:12] = False
    uniform = PeriodPrior(torch.full((16,), 1 / 16).tolist())
    # A 5-frame tune: kept pairs (0, 15), (2, 12), (3, 13) are equal; p = 5 explains all three (p = 10
    # two, p = 15 one). Frames 5 and 10 copy kept frame 0, frames 4 and 9 kept frame 14.
    x = looped(5)[None]
    periods, index = infill_loops(x, keep, uniform)
    assert periods.tolist() == [5] and index[0, [4, 5, 9, 10, 11]].tolist() == [14, 0, 14, 0, 1]
    # Frames 0-3 back at 12-15 (a 12-frame tune, or a 4- or 6-frame one): all three explain the same 4
    # pairs, so the prior picks.
    x = looped(12)[None]
    for probs, expected in (([0] * 4 + [1.0] + [0] * 11, 4), ([0] * 12 + [1.0] + [0] * 3, 12)):
        periods, index = infill_loops(x, keep, PeriodPrior(probs))
        assert periods.tolist() == [expected]
    draws = [int(infill_loops(x, keep, uniform, torch.Generator().manual_seed(k))[0]) for k in range(200)]
    assert set(draws) == {4, 6, 12} and all(45 < draws.count(p) < 90 for p in (4, 6, 12))  # by the prior: uniform
    # Only the first frame back as the last: period 15, the longest there is.
    x = looped(16)[None].clone()
    x[0, 15] = x[0, 0]
    assert infill_loops(x, keep, uniform)[0].tolist() == [15]
    # No equal kept frames: free.
    periods, index = infill_loops(looped(16)[None], keep, uniform)
    assert periods.tolist() == [0] and index.tolist() == [list(range(16))]


# ----- period conditioning: the network told the loop it draws -----


def test_period_tokens_tell_the_period_and_each_frames_phase():
    """Token of frame i: the period's row + the phase row i mod p; a free tune (0) and unknown (-1, None)
    have rows of their own and no phase; a network without the option ignores ``period``."""
    from ddpm.denoisers import TransformerDDPM

    torch.manual_seed(0)
    kwargs = {"num_layers": 1, "num_heads": 1, "mlp_dims": 8, "embed_channels": 4}
    net = TransformerDDPM((8, 3), period_condition=True, **kwargs)
    tokens = net._period_tokens(3, torch.tensor([3, 0, -1]), torch.device("cpu"))
    period, phase = net.period_embedding.weight, net.phase_embedding.weight
    assert torch.allclose(tokens[0], period[3] + phase[torch.arange(8) % 3])
    assert torch.allclose(tokens[1], (period[0] + phase[8]).expand(8, 4))
    assert torch.allclose(tokens[2], (period[8] + phase[8]).expand(8, 4))
    assert torch.equal(net._period_tokens(3, None, torch.device("cpu")), tokens[2].expand(3, 8, 4))
    x, t = torch.randn(3, 8, 3), torch.tensor([5.0, 50.0, 500.0])
    told = net(x, t, period=torch.tensor([3, 0, 7]))
    unknown = net(x, t)
    assert torch.equal(unknown, net(x, t, period=torch.full((3,), -1)))
    assert (told - unknown).abs().amax(dim=(1, 2)).min() > 1e-4  # each sequence's output depends on it
    for bad in (8, -2):
        with pytest.raises(ValueError, match="period must be in -1 ... 7"):
            net(x, t, period=torch.tensor([0, bad, 0]))
    plain = TransformerDDPM((8, 3), **kwargs)
    assert torch.equal(plain(x, t), plain(x, t, period=torch.tensor([3, 0, 7])))
    assert not any("period" in name for name in plain.state_dict())  # old checkpoints keep their keys
    torch.manual_seed(0)
    only = TransformerDDPM((8, 3), period_condition=True, period_phase=False, **kwargs)  # the period only
    assert only.phase_embedding is None
    tokens = only._period_tokens(3, torch.tensor([3, 0, -1]), torch.device("cpu"))
    assert torch.equal(tokens, only.period_embedding.weight[[3, 0, 8]][:, None].expand(3, 8, 4))


class PeriodSpy(torch.nn.Module):
    """A period-conditioned stand-in network: records the ``period`` of every call; eps = 0."""

    period_condition, self_condition, sample_shape = True, False, (8, 3)

    def __init__(self, period_unknown: float = 0.0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.period_unknown, self.seen = period_unknown, []

    def forward(self, x, t, x_self_cond=None, period=None):
        self.seen.append(None if period is None else period.clone())
        return x * self.weight


def test_module_tells_the_network_each_sequences_period():
    """Training: each sequence's smallest period, a share ``period_unknown`` told -1; validation: all of
    them; sampling: the drawn periods, and when infilling 0 (no loop shown) as unknown."""
    from ddpm.module import DiffusionModule

    batch = torch.stack([looped(w, frames=8, seed=w) for w in (2, 3, 5, 8, 1)] * 80)  # 8: free, period 0
    truth = torch.tensor([2, 3, 5, 0, 1] * 80)
    for unknown, share in ((0.0, 0.0), (1.0, 1.0), (0.3, 0.3)):
        net = PeriodSpy(unknown)
        module = DiffusionModule(net, GaussianDiffusion(mittal_betas(50, 1e-4, 0.2)), ema_decay=None)
        module.training_step(batch, 0)
        seen = net.seen[-1]
        told = seen >= 0
        assert torch.equal(seen[told], truth[told]) and bool((seen[~told] == -1).all())
        assert abs(float((~told).float().mean()) - share) < 0.06
    module.validation_step(batch[:5], 0)
    assert torch.equal(net.seen[-1], truth[:5])
    net.seen.clear()
    periods = torch.tensor([2, 0, 3, 0, 5])
    module.sample(5, torch.Generator().manual_seed(0), batch_size=3, sampler=DDIMSampler(2), periods=periods)
    assert [p.tolist() for p in net.seen] == [[2, 0, 3]] * 2 + [[0, 5]] * 2
    net.seen.clear()
    known, mask = batch[:5], torch.ones(5, 8, 3)
    mask[:, 2:6] = 0
    module.sample(5, None, known=known, mask=mask, sampler=DDIMSampler(2), periods=periods)
    assert [p.tolist() for p in net.seen] == [[2, -1, 3, -1, 5]] * 2
    net.seen.clear()
    module.sample(2, None, sampler=DDIMSampler(2))
    assert net.seen == [None, None]  # loops=false: unknown
