"""Spread calibration: give a sequence model's samples the frame-to-frame spread of the training data.

A DDPM trained briefly draws sequences whose frames lie closer together than real ones: for the
main job's melody model the variance of a sequence's frames about their own mean is 0.31 in model
space against the train split's 0.60, while the spread *between* sequences is not too small
(``benchmarks/dispersion.py``; most is lost in the noisy half of the chain). Decoded, such tunes
change too little from frame to frame and too alike from tune to tune. ``fit_spread`` measures the
shortfall once, at the end of training, on the model's own samples drawn as ``sample.py`` draws
them (``SpreadCalibration``), and ``spread_frames`` undoes it for every unconditional sample: each
sequence's frames are moved away from their own mean by the factor s, so the samples' mean
within-sequence variance equals the data's. Exact repeats stay exact (equal frames move alike),
each tune keeps its centre, and only the train split is read.

Framework-free (torch only), like ``ddpm/samplers.py``.
"""

import math

from torch import Tensor


def within_variance(x: Tensor) -> float:
    """The variance of each sequence's frames about their own mean, averaged over sequences and dims:
    ``x`` [N, frames, D] -> float."""
    return float(x.float().var(dim=1, unbiased=False).mean())


def spread_frames(x: Tensor, spread: float) -> Tensor:
    """``x`` [N, frames, D] with each sequence's frames moved from their mean by the factor ``spread``."""
    mean = x.mean(dim=1, keepdim=True)
    return mean + spread * (x - mean)


def fit_spread(data: Tensor, samples: Tensor) -> float:
    """The factor s that gives ``samples`` [n, frames, D] the mean within-sequence variance of ``data``
    [N, frames, D]: sqrt(within(data) / within(samples))."""
    have, want = within_variance(samples), within_variance(data)
    if not (have > 0 and want > 0 and math.isfinite(have) and math.isfinite(want)):
        raise ValueError(
            f"cannot calibrate the spread: within-sequence variance {have:.4g} of the samples, {want:.4g} of the data"
        )
    return math.sqrt(want / have)
