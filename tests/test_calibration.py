"""Spread calibration (``ddpm.calibration``, ``SpreadCalibration``) and period guidance (``PeriodGuided``)."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.calibration import fit_spread, spread_frames, within_variance
from ddpm.diffusion import GaussianDiffusion
from ddpm.periods import PeriodGuided, loop_index, repeat_frames, smallest_periods
from ddpm.samplers import DDIMSampler
from ddpm.schedules import mittal_betas

ROOT = Path(__file__).resolve().parents[1]


def test_within_variance_and_spread_frames_closed_form():
    x = torch.tensor([[[0.0, 2.0], [2.0, 6.0]], [[1.0, 1.0], [1.0, 1.0]]])  # [2 sequences, 2 frames, 2 dims]
    # Sequence 0: variances about its own mean 1 and 4; sequence 1: none. Mean over sequences and dims.
    assert within_variance(x) == pytest.approx((1 + 4 + 0 + 0) / 4)
    wide = spread_frames(x, 2.0)
    assert torch.equal(wide[0], torch.tensor([[-1.0, 0.0], [3.0, 8.0]])) and torch.equal(wide[1], x[1])
    assert torch.equal(wide.mean(dim=1), x.mean(dim=1))  # each sequence keeps its centre


def test_fit_spread_restores_the_datas_within_variance_and_keeps_loops():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(64, 8, 5, generator=g)
    periods = torch.tensor([2, 3, 0, 4] * 16)
    shrunk = repeat_frames(0.3 + 0.5 * torch.randn(64, 8, 5, generator=g), loop_index(periods, 8))
    s = fit_spread(data, shrunk)
    assert s == pytest.approx(math.sqrt(within_variance(data) / within_variance(shrunk)))
    wide = spread_frames(shrunk, s)
    assert within_variance(wide) == pytest.approx(within_variance(data), rel=1e-5)
    assert smallest_periods(wide).tolist() == periods.tolist()  # exact copies stay exact
    with pytest.raises(ValueError, match="within-sequence variance"):
        fit_spread(data, torch.ones(4, 8, 5))
    for broken in (1e20 * torch.randn(4, 8, 5, generator=g), torch.full((4, 8, 5), float("nan"))):
        with pytest.raises(ValueError, match="within-sequence variance"):  # overflowed or diverged samples
            fit_spread(data, broken)


def tiny_module(**kwargs):
    from ddpm.denoisers import TransformerDDPM
    from ddpm.module import DiffusionModule

    torch.manual_seed(0)
    net = TransformerDDPM((8, 3), num_layers=1, num_heads=1, mlp_dims=8, embed_channels=4, **kwargs)
    return DiffusionModule(net, GaussianDiffusion(mittal_betas(50, 1e-4, 0.2)), ema_decay=None)


def test_module_widens_unconditional_samples_only():
    module = tiny_module()
    index = loop_index(torch.tensor([2, 0, 3]), 8)
    draw = lambda **kw: module.sample(3, torch.Generator().manual_seed(0), sampler=DDIMSampler(5), loops=index, **kw)  # noqa: E731
    plain = draw()
    module.spread = 1.7
    assert torch.allclose(draw(), spread_frames(plain, 1.7), atol=1e-6)
    known, mask = plain.clone(), torch.ones_like(plain)
    mask[:, 2:6] = 0
    infilled = draw(known=known, mask=mask)
    module.spread = 1.0
    assert torch.equal(infilled, draw(known=known, mask=mask))  # infilling: pinned to the kept frames, not widened
    checkpoint = {}
    module.spread = 1.25
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["spread"] == 1.25


def test_period_guidance_blends_the_told_and_unknown_predictions():
    module = tiny_module(period_condition=True)
    net = module.denoiser
    with torch.no_grad():
        net.period_embedding.weight.mul_(5)  # a clear difference between told and unknown
    x, t = torch.randn(4, 8, 3, generator=torch.Generator().manual_seed(1)), torch.tensor([5.0, 20.0, 35.0, 49.0])
    period = torch.tensor([2, 0, 3, 4])
    with torch.no_grad():
        told, unknown = net(x, t, period=period), net(x, t, period=torch.full((4,), -1))
        assert not torch.allclose(told, unknown, atol=1e-3)
        for w in (0.0, 0.5, 1.0, 2.0):
            guided = PeriodGuided(net, period, w)(x, t)
            assert torch.allclose(guided, unknown + w * (told - unknown), atol=1e-5)
    # Through DiffusionModule.sample: weight 0 draws as if told nothing, weight 1 as told.
    index = loop_index(period, 8)
    draw = lambda p: module.sample(4, torch.Generator().manual_seed(0), sampler=DDIMSampler(5), loops=index, periods=p)  # noqa: E731
    net.period_guidance = 0.0
    blind = draw(period)
    net.period_guidance = 1.0
    assert torch.allclose(blind, draw(torch.full((4,), -1)), atol=1e-5)
    assert not torch.allclose(blind, draw(period), atol=1e-3)


def test_training_calibrates_the_spread_and_sampling_uses_it(melody_run, tmp_path):
    """The run's last.ckpt holds sqrt(within(train) / within(samples)) of the samples the callback drew,
    and sample.py widens by it (or by ``spread=``)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from ddpm.sampling import draw_loops, load_checkpoint, restore

    _, run = melody_run
    ckpt = load_checkpoint(run / "last.ckpt")
    module, codec = restore(ckpt, run / "last.ckpt")
    assert module.spread == ckpt["spread"] and abs(ckpt["spread"] - 1) > 0.05  # 2 steps of training: far off
    assert load_checkpoint(run / "diffusion_model_000.ckpt")["spread"] == ckpt["spread"]  # the same weights
    config = OmegaConf.create(ckpt["run_config"])
    datamodule = instantiate(config.data)
    datamodule.setup("fit")
    sampler = instantiate(config.callbacks.calibration.sampler)
    n = config.callbacks.calibration.n
    module.spread = 1.0
    periods, index = draw_loops(codec, n, 0)
    samples = module.sample(n, torch.Generator().manual_seed(0), sampler=sampler, loops=index, periods=periods)
    assert ckpt["spread"] == pytest.approx(fit_spread(datamodule.train_set.tensors[0], samples), rel=1e-5)

    def latents(out, *args):
        cmd = [sys.executable, "sample.py", f"ckpt={run / 'last.ckpt'}", "n=3", f"out_dir={out}", *args]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        return np.load(out / "generated.npz")["samples"]

    calibrated, plain = latents(tmp_path / "a"), latents(tmp_path / "b", "spread=1")
    dims = codec.space.dims
    widened = spread_frames(codec.to_model(plain), ckpt["spread"])
    assert np.allclose(codec.to_model(calibrated).numpy(), widened.numpy(), atol=1e-4)
    assert not np.allclose(calibrated[..., dims], plain[..., dims], atol=1e-3)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("spread=0", "spread=0: expected a positive number"),
        ("spread=abc", "spread='abc': expected a positive number"),
        ("period_guidance=0.5", "period_guidance=0.5: this run was not trained with model.period_condition=true"),
        ("temperature=abc", "temperature='abc': expected a number in [0.0, 2.0]"),
        ("temperature=-0.5", "temperature=-0.5: expected a number in [0.0, 2.0]"),
        ("render_n=-1", "render_n=-1: expected an integer >= 0"),
    ],
)
def test_sample_rejects_bad_spread_and_guidance(melody_run, tmp_path, arg, message):
    _, run = melody_run
    cmd = [sys.executable, "sample.py", f"ckpt={run / 'last.ckpt'}", "n=2", f"out_dir={tmp_path}", arg]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_checkpoint_with_a_bad_spread_is_refused(melody_run, tmp_path):
    from ddpm.checkpoint_io import CheckpointError
    from ddpm.sampling import load_checkpoint, restore

    _, run = melody_run
    ckpt = load_checkpoint(run / "last.ckpt")
    ckpt["spread"] = -1.0
    with pytest.raises(CheckpointError, match="its spread is -1.0; expected a positive number"):
        restore(ckpt, "bad.ckpt")


def test_benchmark_rules_match_the_distribution_and_each_period():
    """benchmarks/spread_rules.py: quantile matching gives the samples the data's per-sequence
    within-variance quantiles; the per-period rule the data's mean within each period."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.spread_rules import per_sequence, period_rule, quantile_rule

    g = torch.Generator().manual_seed(0)
    periods = torch.tensor([0, 2, 3] * 40)
    scale = torch.rand(120, 1, 1, generator=g) * 2 + 0.5  # sequences of varied spread
    data = repeat_frames(scale * torch.randn(120, 8, 4, generator=g), loop_index(periods, 8))
    samples = repeat_frames(0.4 * torch.randn(120, 8, 4, generator=g), loop_index(periods, 8))
    matched = quantile_rule(data, samples)(samples)
    qs = [0.1, 0.5, 0.9]
    assert np.quantile(per_sequence(matched).numpy(), qs) == pytest.approx(
        np.quantile(per_sequence(data).numpy(), qs), rel=0.02
    )
    assert smallest_periods(matched).tolist() == periods.tolist()
    by_period = period_rule(data, samples, s=1.0)(samples)
    for p in (0, 2, 3):
        want, got = per_sequence(data)[periods == p].mean(), per_sequence(by_period)[periods == p].mean()
        assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_benchmark_covariance_rules_give_the_samples_the_datas_second_moments():
    """benchmarks/spread_rules.py: the frame rule gives the calibration samples the data's within-sequence
    covariance [D, D] and keeps each sequence's mean and loop; with means, also the data's mean and covariance
    of the sequence means; on new samples of the same kind, nearly so."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.spread_rules import covariance_rule, gaussian_map

    g = torch.Generator().manual_seed(0)
    have, want = torch.tensor([[2.0, 0.5], [0.5, 1.0]]), torch.tensor([[1.0, -0.3], [-0.3, 3.0]])
    a = gaussian_map(have, want)
    assert torch.allclose(a, a.T) and torch.allclose(a @ have @ a, want, atol=1e-6)

    def draw(n):  # correlated dims, sequences of 8 frames looping with period 2 or none
        mix = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.5, 0.0], [0.0, 0.3, 0.2]], dtype=torch.float64)
        centres = torch.randn(n, 1, 3, generator=g, dtype=torch.float64) * 0.3 + 1.0
        frames = centres + torch.randn(n, 8, 3, generator=g, dtype=torch.float64) @ mix
        return repeat_frames(frames, loop_index(torch.tensor([0, 2] * (n // 2)), 8))

    data = 2.0 * torch.randn(600, 8, 3, generator=g, dtype=torch.float64) - 1.0
    samples = draw(600)

    def within(x):
        d = (x - x.mean(1, keepdim=True)).reshape(-1, 3)
        return d.T @ d / len(d)

    frames = covariance_rule(data, samples, between=False)(samples)
    assert torch.allclose(within(frames), within(data), atol=1e-8)
    assert torch.allclose(frames.mean(1), samples.mean(1), atol=1e-10)
    assert torch.equal(frames[1::2, 0], frames[1::2, 2])  # period 2: the loop stays exact
    both = covariance_rule(data, samples, between=True)
    moved = both(samples)
    assert torch.allclose(within(moved), within(data), atol=1e-8)
    assert torch.allclose(moved.mean(1).mean(0), data.mean(1).mean(0), atol=1e-8)
    assert torch.allclose(torch.cov(moved.mean(1).T, correction=0), torch.cov(data.mean(1).T, correction=0), atol=1e-8)
    fresh = both(draw(4000))
    assert torch.allclose(within(fresh), within(data), rtol=0.1, atol=0.05)


def test_the_shipped_model_carries_its_calibration():
    """checkpoints/melody.ckpt keeps the spread its training fitted (the export must not drop it)."""
    from ddpm.sampling import load_checkpoint, restore

    path = ROOT / "checkpoints" / "melody.ckpt"
    module, codec = restore(load_checkpoint(path), path)
    assert module.spread > 1.1  # a trained melody model's samples are under-dispersed (README: 1.333)
    index = loop_index(torch.tensor([4, 0]), codec.periods.frames)
    draw = lambda: module.sample(2, torch.Generator().manual_seed(0), sampler=DDIMSampler(4), loops=index)  # noqa: E731
    widened = draw()
    spread, module.spread = module.spread, 1.0
    assert torch.allclose(widened, spread_frames(draw(), spread), atol=1e-5)
