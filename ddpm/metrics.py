"""Sample-quality statistics on feature arrays [N, D] (numpy): Frechet distance and RBF MMD."""

import numpy as np
from scipy import linalg


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to a and b (Heusel et al. 2017).

    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).
    """
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # singular product: regularise, as the FID reference code does
        eps = 1e-6 * np.eye(len(cov_a))
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def mmd_rbf(a: np.ndarray, b: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD with an RBF kernel (Gretton et al. 2012).

    ``bandwidth`` defaults to the median pairwise distance of the pooled samples.
    """
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    pooled = np.concatenate([a, b])
    sq = _sq_dists(pooled, pooled)
    if bandwidth is None:
        bandwidth = float(np.sqrt(np.median(sq[np.triu_indices(len(pooled), 1)])))
    k = np.exp(-sq / (2 * bandwidth**2))
    n, m = len(a), len(b)
    k_aa, k_bb, k_ab = k[:n, :n], k[n:, n:], k[:n, n:]
    term_aa = (k_aa.sum() - np.trace(k_aa)) / (n * (n - 1))
    term_bb = (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(term_aa + term_bb - 2 * k_ab.mean())


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)
