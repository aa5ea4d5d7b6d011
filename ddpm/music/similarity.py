"""Framewise self-similarity of melodies: Consistency and Variance of overlapping areas.

The measure of Mittal et al. 2021 (sec. 5.1, Table 1), built on Yang & Lerch 2020's overlapping
area (OA) of Gaussians:

1. notes on the 16th grid (``events_to_notes``); a bar is 16 steps, a note belongs to the bar of
   its onset and its duration is its length in steps;
2. frames of 4 bars with a hop of 2 bars (32 bars -> 15 frames);
3. per frame, one Gaussian fitted to the pitches and one to the durations of its notes (mean and
   population standard deviation, the standard deviation floored at ``STD_FLOOR`` so a frame of
   equal values is a narrow Gaussian, not a point);
4. the exact OA of the Gaussians of adjacent frames; a pair with an empty frame (no onset in its
   4 bars) is skipped, and a piece with no scorable pair is left out of the set;
5. per piece, the mean OA over its pairs; over a set of pieces, the mean mu_OA and variance
   sigma2_OA (population) of the per-piece values;
6. against ground truth: Consistency = max(0, 1 - |mu - mu_GT| / mu_GT),
   Variance = max(0, 1 - |sigma2 - sigma2_GT| / sigma2_GT).
"""

import math

import numpy as np

from ddpm.music.events import events_to_notes

STEPS_PER_BAR = 16
FRAME_BARS, HOP_BARS = 4, 2
STD_FLOOR = 1e-6  # as the public implementations add to the standard deviation
FEATURES = ("pitch", "duration")


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def overlap_area(mu1: float, sigma1: float, mu2: float, sigma2: float) -> float:
    """Exact overlapping area of N(mu1, sigma1^2) and N(mu2, sigma2^2): the integral of min(p, q).

    The densities cross at the roots of a quadratic (two points when the variances differ, one when
    they are equal); between consecutive crossings one density is the smaller throughout, so the
    area is a sum of normal CDF differences. Equal variances give 2 Phi(-|mu1 - mu2| / (2 sigma)).
    """
    if sigma1 <= 0 or sigma2 <= 0:
        raise ValueError(f"standard deviations must be positive, got {sigma1}, {sigma2}")
    if sigma1 > sigma2:  # order so that sigma1 <= sigma2
        mu1, sigma1, mu2, sigma2 = mu2, sigma2, mu1, sigma1
    if math.isclose(sigma1, sigma2, rel_tol=1e-12):
        return 2.0 * _phi(-abs(mu1 - mu2) / (2.0 * sigma1))
    # 2 (log p - log q) = 0 in y = x - mu1 (centred, so tiny sigmas do not cancel large terms):
    # a y^2 + b y + c = 0 with a < 0, so p (narrow) is the larger density between the roots.
    d = mu2 - mu1
    a = 1.0 / sigma2**2 - 1.0 / sigma1**2
    b = -2.0 * d / sigma2**2
    c = d * d / sigma2**2 + 2.0 * math.log(sigma2 / sigma1)
    disc = math.sqrt(max(b * b - 4 * a * c, 0.0))
    y1, y2 = sorted(((-b - disc) / (2 * a), (-b + disc) / (2 * a)))
    x1, x2 = mu1 + y1, mu1 + y2
    # Between the crossings the minimum is q, outside them it is p.
    p_mass_inside = _phi((x2 - mu1) / sigma1) - _phi((x1 - mu1) / sigma1)
    q_mass_inside = _phi((x2 - mu2) / sigma2) - _phi((x1 - mu2) / sigma2)
    return (1.0 - p_mass_inside) + q_mass_inside


def frame_gaussians(melody: np.ndarray) -> list[tuple[tuple[float, float], tuple[float, float]] | None]:
    """Per 4-bar frame (hop 2 bars): ((pitch mean, std), (duration mean, std)), or None when empty."""
    bars = len(melody) // STEPS_PER_BAR
    by_bar: list[list] = [[] for _ in range(bars)]
    for note in events_to_notes(melody):
        by_bar[note.start // STEPS_PER_BAR].append(note)
    frames = []
    for first in range(0, bars - FRAME_BARS + 1, HOP_BARS):
        notes = [n for bar in by_bar[first : first + FRAME_BARS] for n in bar]
        if not notes:
            frames.append(None)
            continue
        pitch = np.array([n.pitch for n in notes], np.float64)
        duration = np.array([n.end - n.start for n in notes], np.float64)
        frames.append(
            ((pitch.mean(), pitch.std() + STD_FLOOR), (duration.mean(), duration.std() + STD_FLOOR)),
        )
    return frames


def piece_overlap(melody: np.ndarray) -> np.ndarray:
    """Mean OA of adjacent frames for pitch and for duration: [2], NaN when no pair is scorable."""
    frames = frame_gaussians(melody)
    pairs = [(f, g) for f, g in zip(frames[:-1], frames[1:]) if f is not None and g is not None]
    if not pairs:
        return np.full(2, np.nan)
    return np.array([[overlap_area(*f[k], *g[k]) for k in range(2)] for f, g in pairs]).mean(0)


def piece_overlaps(melodies: np.ndarray) -> np.ndarray:
    """Per-piece mean OA of a set of melodies [n, steps] -> [n, 2] (pitch, duration), NaN rows unscorable."""
    return np.stack([piece_overlap(m) for m in melodies]) if len(melodies) else np.zeros((0, 2))


def set_statistics(overlaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu_OA [2], sigma2_OA [2]) over the scorable pieces of a set."""
    ok = overlaps[~np.isnan(overlaps).any(1)]
    if len(ok) < 2:
        raise ValueError(f"need at least 2 scorable pieces, got {len(ok)} of {len(overlaps)}")
    return ok.mean(0), ok.var(0)


def consistency_variance(overlaps: np.ndarray, gt_overlaps: np.ndarray) -> dict[str, float]:
    """Consistency and Variance of a set's per-piece OAs against ground truth (both [n, 2])."""
    mu, var = set_statistics(overlaps)
    mu_gt, var_gt = set_statistics(gt_overlaps)
    consistency = np.maximum(0.0, 1 - np.abs(mu - mu_gt) / np.maximum(mu_gt, 1e-12))
    # A ground truth with no spread at all scores 1 only for a set with none either.
    variance = np.where(var_gt > 0, np.maximum(0.0, 1 - np.abs(var - var_gt) / np.maximum(var_gt, 1e-300)), var == 0)
    out = {}
    for k, name in enumerate(FEATURES):
        out[f"{name}_consistency"] = float(consistency[k])
        out[f"{name}_variance"] = float(variance[k])
    return out


def bootstrap_consistency_variance(
    overlaps: np.ndarray, gt_overlaps: np.ndarray, rounds: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each Consistency/Variance figure, resampling the pieces of both sets."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(rounds):
        a = overlaps[rng.integers(0, len(overlaps), len(overlaps))]
        b = gt_overlaps[rng.integers(0, len(gt_overlaps), len(gt_overlaps))]
        try:
            scores = consistency_variance(a, b)
        except ValueError:  # a resample with fewer than two scorable pieces
            continue
        for k, v in scores.items():
            draws.setdefault(k, []).append(v)
    tail = (1 - level) / 2 * 100
    return {k: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) for k, v in draws.items()}
