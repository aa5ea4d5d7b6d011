import numpy as np
import pytest
from scipy.spatial.distance import pdist

from ddpm.metrics import frechet_distance, mmd_rbf


def correlated_gaussian(n: int, seed: int, dims: int = 4) -> np.ndarray:
    """n samples [n, dims] of a Gaussian with a full covariance."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(100).normal(size=(dims, dims))
    return rng.normal(size=(n, dims)) @ mixing + np.arange(dims)


def gaussian_mmd(shift: float, sigma: float, bandwidth: float, dims: int) -> float:
    """Population squared MMD of N(0, s^2 I) and N(shift e_1, s^2 I) with an RBF kernel of width h:
    E k(x, y) = (h^2 / (h^2 + 2 s^2))^(d/2) exp(-|mu_x - mu_y|^2 / (2 (h^2 + 2 s^2)))."""
    scale = bandwidth**2 + 2 * sigma**2
    c = (bandwidth**2 / scale) ** (dims / 2)
    return 2 * c * (1 - np.exp(-(shift**2) / (2 * scale)))


def test_frechet_of_a_set_with_itself_is_zero():
    a = correlated_gaussian(2000, seed=0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_of_a_shifted_and_scaled_copy_is_the_closed_form():
    # b = c a + delta: cov_b = c^2 cov_a, (cov_a cov_b)^(1/2) = c cov_a, so
    # FD = |delta|^2 + (1 - c)^2 tr(cov_a), exactly (no sampling error).
    a = correlated_gaussian(2000, seed=0)
    delta = np.array([0.5, -1.0, 2.0, 0.0])
    assert frechet_distance(a, a + delta) == pytest.approx((delta**2).sum(), rel=1e-9)
    trace = np.trace(np.cov(a, rowvar=False))
    b = a.mean(0) + 1.5 * (a - a.mean(0)) + delta  # scaled about the mean, then shifted
    assert frechet_distance(a, b) == pytest.approx((delta**2).sum() + 0.25 * trace, rel=1e-9)


def test_frechet_trace_term_for_covariances_that_do_not_commute():
    # tr (S_a S_b)^(1/2) is the sum of the square roots of the eigenvalues of S_a S_b (real, >= 0).
    a, b = correlated_gaussian(1000, seed=0), correlated_gaussian(1000, seed=1)[:, ::-1] * [1.0, 0.5, 2.0, 1.0]
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert not np.allclose(cov_a @ cov_b, cov_b @ cov_a)
    root_trace = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real).sum()
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * root_trace
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_of_two_gaussians_matches_the_population_value():
    # Independent draws of N(0, diag(1, 4)) and N((1, 0), diag(4, 4)): FD = 1 + (1 - 2)^2 + 0 = 2.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20_000, 2)) * [1.0, 2.0]
    b = rng.normal(size=(20_000, 2)) * [2.0, 2.0] + [1.0, 0.0]
    assert frechet_distance(a, b) == pytest.approx(2.0, abs=0.05)
    assert frechet_distance(a, rng.normal(size=(20_000, 2)) * [1.0, 2.0]) < 0.01


def test_mmd_is_about_zero_for_equal_sets_and_equal_distributions():
    a = correlated_gaussian(500, seed=0)
    # The unbiased estimator leaves out k(x_i, x_i) = 1 only within a set: for b = a it is
    # -2 (1 - mean off-diagonal k) / n, within 2 / n of zero.
    assert abs(mmd_rbf(a, a)) < 2 / len(a)
    assert abs(mmd_rbf(a, correlated_gaussian(500, seed=1))) < 2e-3


def test_mmd_default_bandwidth_is_the_median_pooled_distance():
    a, b = correlated_gaussian(300, seed=0), correlated_gaussian(200, seed=1) + 0.5
    median = np.median(pdist(np.concatenate([a, b])))
    assert mmd_rbf(a, b) == pytest.approx(mmd_rbf(a, b, bandwidth=median), rel=1e-12)


def test_mmd_is_unbiased_matches_gaussian_closed_form_and_grows_with_the_shift():
    """The mean of many small-sample estimates is the population MMD^2 (the estimator is unbiased,
    a biased one would sit 2 (1 - E k) / n = 0.025 above at shift 0); it grows with the shift."""
    rng = np.random.default_rng(2)
    n, reps, dims, sigma, bandwidth = 40, 800, 2, 1.0, 1.5
    means = []
    for shift in (0.0, 0.5, 1.0, 2.0):
        estimates = [
            mmd_rbf(rng.normal(size=(n, dims)) * sigma, rng.normal(size=(n, dims)) * sigma + [shift, 0.0], bandwidth)
            for _ in range(reps)
        ]
        means.append(np.mean(estimates))
        standard_error = np.std(estimates) / np.sqrt(reps)
        assert abs(means[-1] - gaussian_mmd(shift, sigma, bandwidth, dims)) < 5 * standard_error, shift
    assert all(x < y for x, y in zip(means, means[1:], strict=False))
