"""The helpers behind benchmarks/period_character.py (the README's self-similarity by period)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.period_character import by_group, split_variance, tracking  # noqa: E402


def test_the_terms_add_up_to_the_set_variance_and_split_within_and_between():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 5, 500)
    values = 0.8 + 0.05 * groups + rng.normal(0, 0.1, 500)
    values[[3, 7]] = np.nan  # unscorable pieces are left out
    stats = by_group(values, groups)
    ok = ~np.isnan(values)
    assert sum(term for *_, term in stats.values()) == pytest.approx(values[ok].var(), rel=1e-12)
    assert sum(share for share, *_ in stats.values()) == pytest.approx(1.0)
    share, mean, var, _ = stats[2]
    chosen = values[ok & (groups == 2)]
    assert (share, mean, var) == pytest.approx((len(chosen) / ok.sum(), chosen.mean(), chosen.var()))
    within, between = split_variance(stats)
    assert within + between == pytest.approx(values[ok].var(), rel=1e-12)
    means = np.array([values[ok & (groups == g)].mean() for g in range(5)])
    shares = np.array([np.sum(ok & (groups == g)) for g in range(5)]) / ok.sum()
    assert between == pytest.approx(np.sum(shares * (means - np.sum(shares * means)) ** 2))
    # groups that all have one value: no variance within, all of it between
    flat = by_group(np.array([0.5, 0.5, 0.9, 0.9]), np.array([0, 0, 1, 1]))
    assert split_variance(flat) == pytest.approx((0.0, 0.04))


def test_tracking_correlates_group_means_over_groups_with_enough_pieces():
    data = {g: (0.1, 0.7 + 0.03 * g, 0.01, 0.0) for g in range(6)}
    same = {g: (0.1, 0.5 + 0.03 * g, 0.02, 0.0) for g in range(6)}  # shifted: still tracks
    reversed_ = {g: (0.1, 0.9 - 0.03 * g, 0.02, 0.0) for g in range(6)}
    many = {g: 100 for g in range(6)}
    assert tracking(data, same, (many, many)) == pytest.approx(1.0)
    assert tracking(data, reversed_, (many, many)) == pytest.approx(-1.0)
    few = {0: 100, 1: 100, 2: 5, 3: 5, 4: 5, 5: 100}  # the samples have too few in 2-4: three groups left
    wrong = dict(reversed_) | {0: (0.1, 0.9, 0.0, 0.0), 1: (0.1, 0.95, 0.0, 0.0), 5: (0.1, 1.0, 0.0, 0.0)}
    assert tracking(data, wrong, (many, few)) == pytest.approx(np.corrcoef([0.70, 0.73, 0.85], [0.9, 0.95, 1.0])[0, 1])
    assert np.isnan(tracking(data, same, (many, {0: 100, 1: 100})))
