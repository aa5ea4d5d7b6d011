"""Are a melody model's tunes as varied frame to frame as real ones? Three checks against the eval split.

    python benchmarks/dispersion.py --ckpt checkpoints/melody.ckpt [--n 256] [--seed 1] [--starts 200 400 600 999]

Printed, for ``--n`` eval sequences (the ground truth of ``evaluate.py seed=S split_seed=S``) and
as many samples:

1. **Spread in model space**: the mean norm of a frame, the mean distance between adjacent
   frames, the variance of each dimension over all frames, and within a sequence (the variance of
   a sequence's frames about its own mean, averaged): for the data, and for samples of the
   ``fast`` and ancestral samplers, looped (periods drawn as ``sample.py`` draws them) and free.
2. **Where the spread is lost**: eval sequences noised to step t and run back to 0 by the ancestral
   chain; the within-sequence variance of the result for each start t (the data's when the chain
   loses nothing).
3. **Self-similarity by period**: the mean per-piece OA (pitch, duration; ``evaluate.py``'s metric)
   of the ground truth's events and of looped ``fast`` samples, by smallest period (0: no repeat).

Samples are scored as the chain draws them, without the run's spread calibration
(``ddpm/calibration.py``), which exists because of what check 1 shows.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CONF, restore_run  # noqa: E402
from ddpm.music.prepare import read_eval_events  # noqa: E402
from ddpm.music.similarity import piece_overlaps  # noqa: E402
from ddpm.periods import smallest_periods  # noqa: E402
from ddpm.progress import Progress, to_stderr  # noqa: E402
from ddpm.sampling import build_sampler, draw_loops, eval_latents  # noqa: E402

GROUPS = [(0, 0), (1, 3), (4, 4), (5, 7), (8, 8), (9, 15)]


def spread(x: torch.Tensor) -> str:
    """Frame norm, adjacent-frame distance, per-dim and within-sequence variance of [N, frames, D]."""
    adjacent = (x[:, 1:] - x[:, :-1]).norm(dim=-1).mean()
    return (
        f"frame norm {x.norm(dim=-1).mean():.2f}, adjacent distance {adjacent:.2f}, "
        f"variance per dim {x.var(dim=(0, 1)).mean():.3f}, within a sequence {x.var(dim=1).mean():.3f}"
    )


def by_period(overlaps: np.ndarray, periods: np.ndarray) -> str:
    parts = [f"all {np.nanmean(overlaps[:, 0]):.3f} / {np.nanmean(overlaps[:, 1]):.3f}"]
    for low, high in GROUPS:
        chosen = (periods >= low) & (periods <= high)
        if chosen.any():
            mean = np.nanmean(overlaps[chosen], 0)
            name = f"p {low}" if low == high else f"p {low}-{high}"
            parts.append(f"{name} ({chosen.mean():.0%}) {mean[0]:.3f} / {mean[1]:.3f}")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1, help="sampling seed and eval split (as evaluate.py's)")
    parser.add_argument("--starts", nargs="+", type=int, default=[200, 400, 600, 999])
    args = parser.parse_args()
    to_stderr()

    ckpt, module, codec = restore_run(args.ckpt)
    module.spread = 1.0  # the chain's own spread, before the run's calibration (ddpm/calibration.py)
    folder = ckpt["run_config"]["data"]["dir"]
    events = read_eval_events(folder)[0]
    latents = eval_latents(ckpt["run_config"], folder=folder)
    chosen = np.random.default_rng(args.seed).permutation(len(events))[: args.n]
    data = codec.to_model(latents[chosen]).float()
    n = len(data)

    print(f"1. spread in model space ({n} sequences each)")
    print(f"  data:                {spread(data)}")
    samplers = {
        name: build_sampler(OmegaConf.load(CONF / "sampler" / f"{name}.yaml"), module.diffusion)
        for name in ("fast", "ancestral")
    }
    periods, index = draw_loops(codec, n, args.seed) or (None, None)
    looped_fast = None
    for name, sampler in samplers.items():
        for looped in (True, False):
            x = module.sample(
                n,
                torch.Generator().manual_seed(args.seed),
                sampler=sampler,
                progress=f"{name}{' looped' if looped else ''}",
                loops=index if looped else None,
                periods=periods if looped else None,
            )
            if looped and name == "fast":
                looped_fast = x
            print(f"  {name + (', looped' if looped else ', free'):20s} {spread(x)}")

    print("\n2. where the spread is lost: noised to step t, ancestral chain back to 0")
    diffusion, generator = module.diffusion, torch.Generator().manual_seed(args.seed)
    module.eval()
    for start in args.starts:
        x = diffusion.q_sample(data, torch.full((n,), start), torch.randn(data.shape, generator=generator))
        counter = Progress(f"from t = {start}:", start + 1, "steps")
        net = module.chain_denoiser()
        with torch.no_grad():
            for t in range(start, -1, -1):
                x = diffusion.p_sample(net, x, torch.full((n,), t), generator)
                counter.step()
        print(f"  from t = {start:4d}: within a sequence {x.var(dim=1).mean():.3f} (data {data.var(dim=1).mean():.3f})")

    print("\n3. mean per-piece OA, pitch / duration, by smallest period (share of the set)")
    print(f"  ground truth:        {by_period(piece_overlaps(events[chosen]), smallest_periods(data).numpy())}")
    if looped_fast is not None:
        melodies = codec.melodies_from_latents(codec.decode(looped_fast, args.seed))
        print(f"  fast, looped:        {by_period(piece_overlaps(melodies), periods.numpy())}")


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
