"""Does a melody model give each loop length its own character? Self-similarity by period, train split.

    python benchmarks/period_character.py --ckpt checkpoints/melody.ckpt [--n 1024] [--seed 1] [--sampler fast]

The prepare stage fills 32 bars by playing a short tune again, so a training sequence's smallest
period (in 2-bar frames; 0: no repeat) says how long its tune is, and where the tune's end meets its
start again. Per period, for the train split's corpus events and for ``--n`` samples drawn as
``sample.py`` draws them (loops from the period prior; as drawn, and widened by the checkpoint's
spread), this prints the share of the set, the mean per-piece OA and its variance (duration, then
pitch; ``evaluate.py``'s metric), and each period's term of the set's OA variance by the law of total
variance: sum over periods of share x (variance within + (period mean - set mean)^2). A model that
draws each period's character tracks the data's means and variances period by period; the last
lines give the correlation of the per-period means (periods with at least 20 data and 10 sample
pieces) and how much of the set's variance lies within the periods and between them.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CONF, restore_run, sample_parser, train_latents  # noqa: E402
from ddpm.calibration import spread_frames  # noqa: E402
from ddpm.music.prepare import train_events  # noqa: E402
from ddpm.music.similarity import piece_overlaps  # noqa: E402
from ddpm.periods import smallest_periods  # noqa: E402
from ddpm.progress import to_stderr  # noqa: E402
from ddpm.sampling import build_sampler, draw_loops  # noqa: E402


def by_group(values: np.ndarray, groups: np.ndarray) -> dict[int, tuple[float, float, float, float]]:
    """Per group of a set of values (NaN ones left out): (share, mean, variance, term), where the terms
    share x (variance + (mean - set mean)^2) add up to the set's (population) variance."""
    ok = ~np.isnan(values)
    values, groups = values[ok], groups[ok]
    mean = values.mean()
    out = {}
    for g in np.unique(groups):
        v = values[groups == g]
        share = len(v) / len(values)
        out[int(g)] = (share, float(v.mean()), float(v.var()), share * float(v.var() + (v.mean() - mean) ** 2))
    return out


def split_variance(stats: dict[int, tuple[float, float, float, float]]) -> tuple[float, float]:
    """(within, between): the set's variance as the mean variance inside the groups plus that of their means."""
    mean = sum(share * m for share, m, _, _ in stats.values())
    within = sum(share * var for share, _, var, _ in stats.values())
    between = sum(share * (m - mean) ** 2 for share, m, _, _ in stats.values())
    return within, between


def tracking(data: dict, samples: dict, counts: tuple[dict, dict], least: tuple[int, int] = (20, 10)) -> float:
    """Correlation of the per-group means of data and samples over the groups both have enough of."""
    keys = [g for g in data if counts[0].get(g, 0) >= least[0] and counts[1].get(g, 0) >= least[1]]
    if len(keys) < 3:
        return float("nan")
    return float(np.corrcoef([data[g][1] for g in keys], [samples[g][1] for g in keys])[0, 1])


def main() -> None:
    parser = sample_parser(__doc__, seed=1)
    args = parser.parse_args()
    to_stderr()

    ckpt, module, codec = restore_run(args.ckpt)
    spread, module.spread = module.spread, 1.0
    data = train_latents(ckpt["run_config"])
    events = train_events(ckpt["run_config"], codec.periods.frames)
    if len(events) != len(data):
        raise SystemExit(f"the train split's events ({len(events)}) and latents ({len(data)}) do not pair up")
    sampler = build_sampler(OmegaConf.load(CONF / "sampler" / f"{args.sampler}.yaml"), module.diffusion)
    periods, index = draw_loops(codec, args.n, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x = module.sample(args.n, generator, sampler=sampler, loops=index, periods=periods, progress="samples")

    drawn = smallest_periods(x).numpy()  # widening keeps every loop
    sets = {
        "data": (piece_overlaps(events), smallest_periods(data).numpy()),
        "drawn": (piece_overlaps(codec.melodies_from_latents(codec.decode(x, args.seed))), drawn),
        f"s={spread:.3f}": (
            piece_overlaps(codec.melodies_from_latents(codec.decode(spread_frames(x, spread), args.seed))),
            drawn,
        ),
    }
    print(f"{len(events)} train sequences, {args.n} samples ({args.sampler}, seed {args.seed}), spread {spread:.3f}")
    for k, feature in ((1, "duration"), (0, "pitch")):  # piece_overlaps: column 0 pitch, 1 duration
        stats = {name: by_group(o[:, k], p) for name, (o, p) in sets.items()}
        counts = {name: {g: int((p == g).sum()) for g in np.unique(p)} for name, (_, p) in sets.items()}
        print(f"\n{feature} OA by smallest period: share, mean, variance, term of the set's variance")
        print("  p  | " + " | ".join(f"{name:30s}" for name in sets))
        for g in sorted(stats["data"]):
            cells = [
                "{:.2f} {:.3f} {:.4f} {:.4f}".format(*s[g]) + " " * 5 if g in s else " " * 30 for s in stats.values()
            ]
            print(f"  {g:2d} | " + " | ".join(cells))
        for name, s in stats.items():
            within, between = split_variance(s)
            r = tracking(stats["data"], s, (counts["data"], counts[name])) if name != "data" else 1.0
            print(
                f"  {name:9s} variance {within + between:.4f} = within {within:.4f} + between {between:.4f}; "
                f"per-period means correlate with the data's: {r:.2f}"
            )


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
