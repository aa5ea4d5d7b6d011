"""The helpers behind benchmarks/loop_diagnostics.py (the README's loop-survival figures)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.loop_diagnostics import loop_ratio, shared_noise, smallest_period  # noqa: E402


def looped(period: int, frames: int = 16, dims: int = 5, seed: int = 0) -> torch.Tensor:
    tune = torch.randn(period, dims, generator=torch.Generator().manual_seed(seed))
    return tune[torch.arange(frames) % period]


def test_smallest_period_finds_the_loop_and_nothing_in_noise():
    assert smallest_period(looped(3), 8) == 3  # also periodic with 6: the smallest wins
    assert smallest_period(looped(8), 8) == 8 and smallest_period(looped(8), 7) == 0
    assert smallest_period(torch.randn(16, 5), 8) == 0


def test_loop_ratio_is_zero_for_a_loop_and_near_one_for_noise():
    x = torch.stack([looped(3), looped(5, seed=1)])
    assert torch.allclose(loop_ratio(x, torch.tensor([3, 5])), torch.zeros(2))
    noise = torch.randn(64, 16, 5, generator=torch.Generator().manual_seed(2))
    ratio = loop_ratio(noise, torch.full((64,), 4))
    assert 0.9 < ratio.mean().item() < 1.1  # frames p apart are as far apart as any two
    half = noise.clone()
    half[:, 4:8] = half[:, 0:4]  # one repeat of four frames: some of the distances drop to 0
    assert (loop_ratio(half, torch.full((64,), 4)) < ratio).all()


def test_loop_ratio_golden_value():
    """Frames 0, 1, 3 on a line, period 1: distances one apart 1 and 2 (mean 1.5); the six ordered
    pairs of distinct frames 1, 3, 2 twice (mean 2): ratio 0.75."""
    x = torch.tensor([[[0.0], [1.0], [3.0]]])
    assert loop_ratio(x, torch.tensor([1])).item() == 0.75


def test_shared_noise_gives_every_copy_the_same_noise():
    noise = torch.randn(2, 16, 5)
    out = shared_noise(noise, torch.tensor([3, 5]))
    assert torch.equal(out[0], noise[0, torch.arange(16) % 3]) and torch.equal(out[1], noise[1, torch.arange(16) % 5])
    assert torch.equal(noise[:, :3], out[:, :3])  # the first period keeps its own noise
