"""Spread calibration rules for a melody run, scored on the train split, never the eval split.

    python benchmarks/spread_rules.py --ckpt outputs/<run>/last.ckpt [--spreads 1.15 1.3] [--n 1024]

The shipped rule (``ddpm.calibration``) widens every unconditional sample about its own mean by one
factor s, fitted so that the samples' mean within-sequence variance is the train split's. This
draws the calibration samples as ``SpreadCalibration`` does (512, seed 0, loops from the run's
period prior, ``--sampler``) and ``--n`` test samples (``--seed``), prints how the within-sequence
variance is distributed in the data and the samples (quantiles, by smallest period), then scores
the test samples widened by each rule against the train split's corpus events: as drawn, the
calibrated s, each of ``--spreads``, a factor per sequence matching the distribution of the
within-sequence variance (quantile to quantile), a factor per smallest period, and two rules that
match second moments in full rather than one scalar: the frames' deviations from their sequence's
mean mapped so that their covariance [D, D] is the data's (the optimal-transport map between the
two Gaussians, the smallest change that does it), and that plus the same map for the sequence means
about the overall mean. Columns: mean per-piece OA, its variance across pieces, Consistency and
Variance (pitch, duration; ``evaluate.py``'s metric), notes per bar, and the Fréchet distance of the
frames to the train split's in model space.
"""

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CONF, restore_run, sample_parser, train_latents  # noqa: E402
from benchmarks.note_density import bar_counts  # noqa: E402
from ddpm.calibration import fit_spread, spread_frames  # noqa: E402
from ddpm.metrics import frechet_distance  # noqa: E402
from ddpm.music.prepare import train_events  # noqa: E402
from ddpm.music.similarity import consistency_variance, piece_overlaps  # noqa: E402
from ddpm.periods import smallest_periods  # noqa: E402
from ddpm.progress import to_stderr  # noqa: E402
from ddpm.sampling import build_sampler, draw_loops  # noqa: E402

PERIOD_GROUPS = [(0, 0), (1, 3), (4, 4), (5, 7), (8, 8), (9, 15)]


def per_sequence(x: torch.Tensor) -> torch.Tensor:
    """Each sequence's within-sequence variance: ``x`` [N, frames, D] -> [N]."""
    return x.float().var(dim=1, unbiased=False).mean(dim=-1)


def widen_each(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """``x`` [N, frames, D] with sequence i moved from its mean by ``factors[i]``."""
    mean = x.mean(dim=1, keepdim=True)
    return mean + factors.to(x.dtype)[:, None, None] * (x - mean)


def quantile_rule(data: torch.Tensor, calibration: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Widen each sequence so that its within-sequence variance lands on the data's at its quantile."""
    qs = np.linspace(0, 1, 101)
    want, have = np.quantile(per_sequence(data).numpy(), qs), np.quantile(per_sequence(calibration).numpy(), qs)

    def rule(x: torch.Tensor) -> torch.Tensor:
        v = per_sequence(x).numpy()
        target = np.interp(np.interp(v, have, qs), qs, want)
        return widen_each(x, torch.from_numpy(np.sqrt(np.maximum(target, 1e-8) / np.maximum(v, 1e-8))))

    return rule


def period_rule(data: torch.Tensor, calibration: torch.Tensor, s: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The mean match within each smallest period (the overall s where either side has few sequences)."""
    vd, vc = per_sequence(data), per_sequence(calibration)
    pd, pc = smallest_periods(data), smallest_periods(calibration)
    factor = {}
    for p in range(data.shape[1]):
        enough = (pd == p).sum() >= 20 and (pc == p).sum() >= 10
        factor[p] = float((vd[pd == p].mean() / vc[pc == p].mean()).sqrt()) if enough else s

    def rule(x: torch.Tensor) -> torch.Tensor:
        return widen_each(x, torch.tensor([factor[int(p)] for p in smallest_periods(x)]))

    return rule


def _sqrt(c: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(c)
    return (vectors * values.clamp_min(1e-10) ** power) @ vectors.T


def gaussian_map(have: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix A with A have A = want: the optimal-transport map between centred Gaussians."""
    root, inverse = _sqrt(have), _sqrt(have, -0.5)
    return inverse @ _sqrt(root @ want @ root) @ inverse


def covariance_rule(
    data: torch.Tensor, calibration: torch.Tensor, between: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Give the deviations of frames from their sequence's mean the data's covariance, and with
    ``between`` also the sequence means the data's mean and covariance."""

    def within(x: torch.Tensor) -> torch.Tensor:
        d = (x - x.mean(dim=1, keepdim=True)).reshape(-1, x.shape[-1]).double()
        return d.T @ d / len(d)

    def means(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = x.mean(dim=1).double()
        return m.mean(0), torch.cov(m.T, correction=0)

    frames = gaussian_map(within(calibration), within(data))
    (have_mean, have_cov), (want_mean, want_cov) = means(calibration), means(data)
    centres = gaussian_map(have_cov, want_cov)

    def rule(x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True).double()
        moved = (x.double() - mean) @ frames
        if between:
            mean = want_mean + (mean - have_mean) @ centres
        return (mean + moved).to(x.dtype)

    return rule


def main() -> None:
    parser = sample_parser(__doc__, seed=1)
    parser.add_argument("--spreads", nargs="*", type=float, default=[], help="further fixed factors to score")
    args = parser.parse_args()
    to_stderr()

    ckpt, module, codec = restore_run(args.ckpt)
    module.spread = 1.0  # draw as drawn; the rules below widen
    data = train_latents(ckpt["run_config"])
    gt = piece_overlaps(train_events(ckpt["run_config"], codec.periods.frames))
    sampler = build_sampler(OmegaConf.load(CONF / "sampler" / f"{args.sampler}.yaml"), module.diffusion)

    def draw(n: int, seed: int, what: str) -> torch.Tensor:
        periods, index = draw_loops(codec, n, seed)
        generator = torch.Generator().manual_seed(seed)
        return module.sample(n, generator, sampler=sampler, loops=index, periods=periods, progress=what)

    calibration, test = draw(512, 0, "calibration samples"), draw(args.n, args.seed, "test samples")
    s = fit_spread(data, calibration)

    print("within-sequence variance      mean   quantiles 5 / 25 / 50 / 75 / 95 %          log-sd")
    for name, x in (("train split", data), ("calibration samples", calibration)):
        v = per_sequence(x)
        q = " / ".join(f"{a:.3f}" for a in np.quantile(v.numpy(), [0.05, 0.25, 0.5, 0.75, 0.95]))
        print(f"  {name:26s}  {v.mean():.3f}  {q}   {v.clamp_min(1e-6).log().std():.2f}")
    print("by smallest period: data (share), samples (share), the factor that matches them")
    vd, vc = per_sequence(data), per_sequence(calibration)
    pd, pc = smallest_periods(data), smallest_periods(calibration)
    for lo, hi in PERIOD_GROUPS:
        md, mc = (pd >= lo) & (pd <= hi), (pc >= lo) & (pc <= hi)
        print(
            f"  p {lo}-{hi}: {vd[md].mean():.3f} ({md.float().mean():.2f}), {vc[mc].mean():.3f} "
            f"({mc.float().mean():.2f}), {float((vd[md].mean() / vc[mc].mean()).sqrt()):.3f}"
        )

    print(
        f"\ntrain split: {len(gt)} sequences, mean OA {np.nanmean(gt[:, 0]):.3f} / {np.nanmean(gt[:, 1]):.3f}, "
        f"variance {np.nanvar(gt[:, 0]):.4f} / {np.nanvar(gt[:, 1]):.4f} (pitch / duration)"
    )
    print("rule                 mean OA         variance          C pitch  V pitch  C dur  V dur  notes/bar  frame FD")
    rules = {"as drawn": lambda x: x, f"s = {s:.3f} (fitted)": lambda x: spread_frames(x, s)}
    rules |= {f"s = {f:g}": (lambda x, f=f: spread_frames(x, f)) for f in args.spreads}
    rules |= {"quantile matching": quantile_rule(data, calibration), "per period": period_rule(data, calibration, s)}
    rules |= {
        "covariance, frames": covariance_rule(data, calibration, between=False),
        "covariance, + means": covariance_rule(data, calibration, between=True),
    }
    frames = data.reshape(-1, data.shape[-1]).numpy()
    for name, rule in rules.items():
        x = rule(test)
        melodies = codec.melodies_from_latents(codec.decode(x, args.seed))
        overlaps = piece_overlaps(melodies)
        r = consistency_variance(overlaps, gt)
        fd = frechet_distance(x.reshape(-1, x.shape[-1]).numpy(), frames)
        print(
            f"{name:20s} {np.nanmean(overlaps[:, 0]):.3f} / {np.nanmean(overlaps[:, 1]):.3f}   "
            f"{np.nanvar(overlaps[:, 0]):.4f} / {np.nanvar(overlaps[:, 1]):.4f}   {r['pitch_consistency']:.3f}    "
            f"{r['pitch_variance']:.3f}    {r['duration_consistency']:.3f}  {r['duration_variance']:.3f}  "
            f"{bar_counts(melodies).mean():9.2f}  {fd:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
