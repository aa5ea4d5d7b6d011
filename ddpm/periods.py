"""Loops: how often the training sequences repeat with each period, and sampling of looped sequences.

The prepare stage plays a short folk tune again from its start until the sequence is full
(``ddpm.music.prepare.tune_sequences``), as the tunes are played, so most training sequences repeat
their frames exactly with some period p (80% of the folk corpus's). ``PeriodPrior`` holds the share
of each smallest period in the train split (p = 0: no repeat). ``Looped`` makes any sampler draw a
sequence with a given period (``loop_index``) or the loop that an infilled sequence's kept frames
show (``infill_loops``): every frame's x_0 prediction is replaced by that of its first
occurrence (frame i mod p) before the sampler uses it, so the chain ends exactly periodic while the
network still sees every copy with its own noise, as in training. Drawing p from the prior and then
the tune given p is the generative story of the data itself.

Framework-free (torch only), like ``ddpm/samplers.py``.
"""

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ddpm.diffusion import Denoiser, GaussianDiffusion


def smallest_periods(x: Tensor) -> Tensor:
    """Per sequence of ``x`` [N, frames, D]: the smallest p >= 1 with frame i == frame i + p for every i,
    else 0: [N] long."""
    periods = torch.zeros(len(x), dtype=torch.long)
    for p in range(x.shape[1] - 1, 0, -1):  # downwards, so the smallest period is written last
        periods[(x[:, p:] == x[:, :-p]).flatten(1).all(dim=1).cpu()] = p
    return periods


def loop_index(periods: Tensor, frames: int) -> Tensor:
    """[B] periods -> [B, frames] long: the first occurrence of each frame, i mod p (i itself for p = 0);
    the ``index`` of ``Looped`` and ``repeat_frames``."""
    i = torch.arange(frames, device=periods.device)
    p = periods[:, None]
    return torch.where(p > 0, i % p.clamp(min=1), i)


class PeriodPrior:
    """The share of each smallest period in a set of sequences. Args: probs: ``probs[p]`` for p = 0
    (no repeat), 1, ..., frames - 1; they sum to 1."""

    def __init__(self, probs: Sequence[float]):
        probs = torch.as_tensor(probs, dtype=torch.float64)
        ok = probs.ndim == 1 and len(probs) >= 1 and bool((probs >= 0).all())  # NaN fails too
        if not ok or abs(float(probs.sum()) - 1) > 1e-6:
            raise ValueError(f"probs must be a 1-D distribution, got {probs.tolist()}")
        self.probs = probs

    @classmethod
    def fit(cls, sequences: Tensor) -> "PeriodPrior":
        """The prior of ``sequences`` [N, frames, D] (the train split, in model space)."""
        counts = torch.bincount(smallest_periods(sequences), minlength=sequences.shape[1]).double()
        return cls((counts / counts.sum()).tolist())

    @property
    def frames(self) -> int:
        return len(self.probs)

    def draw(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` periods [n] long, drawn from the prior."""
        return torch.multinomial(self.probs, n, replacement=True, generator=generator)

    def state_dict(self) -> dict:
        return {"probs": self.probs.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> "PeriodPrior":
        return cls(state["probs"])


def infill_loops(
    known: Tensor, keep: Tensor, prior: PeriodPrior, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """The loop each infilled sequence's kept frames show: (periods [B], index [B, frames]).

    ``known`` [B, frames, D], ``keep`` [frames] bool (the kept frames). A period p is consistent when
    the kept frames of each class i mod p are all equal; of the consistent periods, those that explain
    the most equal pairs of kept frames are candidates, and one is drawn from them in proportion to
    ``prior`` (the kept frames cannot tell a period from its multiples: 4 from 12 when frames 0-3
    return at 12-15). No equal pair: p = 0, the sequence is free. ``index[b, i]`` is the first kept
    frame of i's class (its first frame when none is kept), so a generated frame whose class holds a
    kept frame becomes a copy of it, as in the loop, and the others are tied among themselves.
    """
    batch, frames = known.shape[:2]
    kept = torch.nonzero(keep.cpu()).flatten().tolist()
    pairs = {}  # per period: consecutive kept frames of one class i mod p (the same for every sequence)
    for p in range(1, frames):
        members = [[i for i in kept if i % p == c] for c in range(p)]
        pairs[p] = [(m[j], m[j + 1]) for m in members for j in range(len(m) - 1)]
    periods, index = torch.zeros(batch, dtype=torch.long), torch.arange(frames).repeat(batch, 1)
    for b in range(batch):
        matches = {
            p: len(ps) for p, ps in pairs.items() if ps and all(torch.equal(known[b, i], known[b, j]) for i, j in ps)
        }
        if not matches:
            continue
        most = max(matches.values())
        best = [p for p, m in matches.items() if m == most]
        weights = (
            prior.probs[best] if float(prior.probs[best].sum()) > 0 else torch.ones(len(best), dtype=torch.float64)
        )
        p = best[int(torch.multinomial(weights, 1, generator=generator))]
        periods[b] = p
        for i in range(frames):
            same = [j for j in kept if j % p == i % p]
            index[b, i] = same[0] if same else i % p
    return periods, index


class Looped:
    """A denoiser whose x_0 prediction repeats: frame i of sequence b takes frame ``index[b, i]``'s
    (``loop_index``, ``infill_loops``; index i itself: that frame is free).

    Each frame i of x_0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t) is replaced by frame index[b, i]
    and returned as the eps of that x_0 (as ``ReconstructionGuided`` returns its correction), so every
    sampler uses it unchanged; at the last step the samplers return that x_0 itself. The first
    occurrence is copied rather than the copies averaged: an average of different completions is a
    blend that decodes to plainer melodies.
    """

    def __init__(self, diffusion: GaussianDiffusion, denoiser: Denoiser, index: Tensor):
        self.diffusion, self.denoiser, self.index = diffusion, denoiser, index
        with torch.inference_mode(False):  # samplers run in inference mode; guidance's autograd must save it
            self.looped = (index != torch.arange(index.shape[1], device=index.device)).any(dim=1)  # [B]: not free

    def __call__(self, x_t: Tensor, cond: Tensor) -> Tensor:
        eps = self.denoiser(x_t, cond)
        ab = self.diffusion.alphas_cumprod[self.diffusion.step_of_condition(cond)]
        ab = ab.reshape(-1, *((1,) * (x_t.ndim - 1)))
        x_start = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        x_start = repeat_frames(x_start, self.index)
        looped = self.looped.to(x_t.device).reshape(-1, *((1,) * (x_t.ndim - 1)))
        return torch.where(looped, (x_t - ab.sqrt() * x_start) / (1 - ab).sqrt(), eps)  # free ones: untouched


def kept_sources(keep: Tensor, index: Tensor | None, batch: int) -> np.ndarray:
    """Per sequence and frame, the kept frame whose own notes it holds after infilling, or -1: a kept frame
    its own, a generated frame that a loop makes a copy of a kept frame (``index``, as ``infill_loops``
    gives it; None: no loops) that frame, the other generated frames -1. ``keep`` [frames] bool -> [B, frames]."""
    keep = keep.cpu().bool()
    own = torch.arange(len(keep)).repeat(batch, 1)
    source = own if index is None else index.cpu()
    return torch.where(keep[own], own, torch.where(keep[source], source, -1)).numpy()


def repeat_frames(x: Tensor, index: Tensor) -> Tensor:
    """``x`` [B, frames, D] with frame i of sequence b replaced by frame ``index[b, i]``."""
    index = index.to(x.device)
    return x.gather(1, index[..., None].expand_as(x))


class PeriodGuided:
    """A period-conditioned denoiser told ``period`` [B] with weight ``weight``: classifier-free guidance
    (Ho & Salimans 2022) with the loop as the class, eps = eps(unknown) + w (eps(period) - eps(unknown)).

    w = 1 is the network told its period; w = 0 is it not told (-1); w in between interpolates the two
    predictions, so a looped sample's content is drawn between "knowing how long the loop is" and
    "not knowing". Both predictions come from one forward pass of twice the batch. Args: denoiser:
    ``denoiser(x_t, cond, x_self_cond=None, period=...) -> eps``.
    """

    def __init__(self, denoiser: Callable[..., Tensor], period: Tensor, weight: float):
        self.denoiser, self.period, self.weight = denoiser, period, float(weight)

    def __call__(self, x_t: Tensor, cond: Tensor, x_self_cond: Tensor | None = None) -> Tensor:
        b = x_t.shape[0]
        period = self.period.to(x_t.device)
        both = torch.cat([period, torch.full_like(period, -1)])
        self_cond = torch.cat([x_self_cond, x_self_cond]) if x_self_cond is not None else None
        eps = self.denoiser(torch.cat([x_t, x_t]), torch.cat([cond, cond]), self_cond, period=both)
        told, unknown = eps[:b], eps[b:]
        return unknown + self.weight * (told - unknown)
