"""Choose a period-conditioned melody model's ``period_guidance`` on the train split, never the eval split.

    python benchmarks/period_guidance.py --ckpt outputs/<run>/last.ckpt [--weights 0 0.25 0.5 0.75 1] [--n 1024]

A period-conditioned model (``model.period_condition=true``) told its loop draws tunes whose
frames are more realistic but less alike than real tunes; not told, they are more alike
(``benchmarks/dispersion.py``). ``period_guidance`` w blends the two predictions
(``ddpm.periods.PeriodGuided``). For each w this draws ``--n`` looped samples (periods from the run's
prior, as ``sample.py``), decodes them, and scores their per-piece OA (``evaluate.py``'s metric)
against the **train** split's corpus events (all its sequences): mean OA, Consistency and Variance
(pitch, duration). The w to ship is the one whose worst Consistency is best; set it with
``model.period_guidance=w`` when training, or pass ``period_guidance=w`` to sample.py / evaluate.py.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CONF, restore_run, sample_parser  # noqa: E402
from ddpm.music.prepare import train_events  # noqa: E402
from ddpm.music.similarity import consistency_variance, piece_overlaps  # noqa: E402
from ddpm.progress import to_stderr  # noqa: E402
from ddpm.sampling import build_sampler, draw_loops  # noqa: E402


def main() -> None:
    parser = sample_parser(__doc__, seed=0)
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    args = parser.parse_args()
    to_stderr()

    ckpt, module, codec = restore_run(args.ckpt)
    module.spread = 1.0  # guidance scored on the samples as drawn (spread calibration would widen them)
    weights = args.weights if module.period_condition else [1.0]  # a plain run: scored as it is, for comparison
    frames = codec.periods.frames
    events = train_events(ckpt["run_config"], frames)
    gt = piece_overlaps(events)
    print(
        f"train split: {len(events)} sequences, mean OA {np.nanmean(gt[:, 0]):.3f} / {np.nanmean(gt[:, 1]):.3f} "
        f"(pitch / duration), variance {np.nanvar(gt[:, 0]):.4f} / {np.nanvar(gt[:, 1]):.4f}"
    )
    sampler = build_sampler(OmegaConf.load(CONF / "sampler" / f"{args.sampler}.yaml"), module.diffusion)
    periods, index = draw_loops(codec, args.n, args.seed)
    print("w      mean OA         variance          C pitch  V pitch  C dur  V dur")
    best = None
    for weight in weights:
        module.denoiser.period_guidance = weight
        x = module.sample(
            args.n,
            torch.Generator().manual_seed(args.seed),
            sampler=sampler,
            loops=index,
            periods=periods,
            progress=f"w={weight}",
        )
        overlaps = piece_overlaps(codec.melodies_from_latents(codec.decode(x, args.seed)))
        s = consistency_variance(overlaps, gt)
        worst = min(s["pitch_consistency"], s["duration_consistency"])
        print(
            f"{weight:<6} {np.nanmean(overlaps[:, 0]):.3f} / {np.nanmean(overlaps[:, 1]):.3f}   "
            f"{np.nanvar(overlaps[:, 0]):.4f} / {np.nanvar(overlaps[:, 1]):.4f}   "
            f"{s['pitch_consistency']:.3f}    {s['pitch_variance']:.3f}    {s['duration_consistency']:.3f}  "
            f"{s['duration_variance']:.3f}",
            flush=True,
        )
        best = max(best or (worst, weight), (worst, weight))
    print(f"best worst-Consistency: w = {best[1]} ({best[0]:.3f})")


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
