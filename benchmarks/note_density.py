"""Where a melody run's samples lose notes: notes per bar at each link of the chain.

    python benchmarks/note_density.py --ckpt checkpoints/melody.ckpt [--n 1024] [--seed 1] [--sampler fast]

``evaluate.py`` scores the samples' notes per bar against the eval split's corpus events. Between
the two stand three links, and this prints each on its own: the corpus events of the eval and the
train split (the model learns the train split only), the same sequences decoded by the run's
MusicVAE from their latents as the model sees them (active dims, the rest refilled as every sample
is: what the chain can at best give back), and ``--n`` unconditional samples (``--sampler``, loops
from the run's period prior, ``--seed``), as drawn and widened by the run's spread. Columns: mean
notes per bar, its 5/25/50/75/95% quantiles over sequences, the share of bars with 8 or more notes,
the share of notes that last a bar or more (a tune's held last note shows here), and for the rows
in model space the Fréchet distance of their frames to the frames of the train
sequences that the decoded train row does not hold (``--n`` random train sequences are decoded).
"""

import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CONF, restore_run, sample_parser, train_latents  # noqa: E402
from ddpm.calibration import spread_frames  # noqa: E402
from ddpm.metrics import frechet_distance  # noqa: E402
from ddpm.music.events import WINDOW_STEPS, events_to_notes  # noqa: E402
from ddpm.music.prepare import read_eval_events, train_events  # noqa: E402
from ddpm.progress import to_stderr  # noqa: E402
from ddpm.sampling import build_sampler, draw_loops, eval_latents  # noqa: E402

BAR_STEPS = WINDOW_STEPS // 2


def bar_counts(melodies: np.ndarray) -> np.ndarray:
    """Notes starting in each bar: events ``[n, steps]`` -> ``[n, steps // 16]``."""
    counts = np.zeros((len(melodies), melodies.shape[1] // BAR_STEPS), np.int64)
    for i, melody in enumerate(melodies):
        for note in events_to_notes(melody):
            counts[i, note.start // BAR_STEPS] += 1
    return counts


def long_share(melodies: np.ndarray) -> float:
    """The share of notes that last a bar (16 steps) or more."""
    lengths = [note.end - note.start for melody in melodies for note in events_to_notes(melody)]
    return float(np.mean(np.array(lengths) >= BAR_STEPS)) if lengths else 0.0


def row(name: str, melodies: np.ndarray, fd: float | None = None) -> str:
    counts = bar_counts(melodies)
    per_sequence = counts.mean(axis=1)
    quantiles = " / ".join(f"{q:5.2f}" for q in np.quantile(per_sequence, [0.05, 0.25, 0.5, 0.75, 0.95]))
    dense = (counts >= 8).mean()
    frechet = "" if fd is None else f"{fd:6.2f}"
    figures = f"{per_sequence.mean():9.2f}  {quantiles:>41}  {dense:9.3f}  {long_share(melodies):12.3f}  {frechet:>8}"
    return f"{name:34s} {len(melodies):5d}  {figures}"


def main() -> None:
    parser = sample_parser(__doc__, seed=1)
    args = parser.parse_args()
    to_stderr()

    ckpt, module, codec = restore_run(args.ckpt)
    config = ckpt["run_config"]
    spread, module.spread = module.spread, 1.0  # draw as drawn; widened below as sampling does
    data = train_latents(config)
    chosen = np.random.default_rng(args.seed).permutation(len(data))
    decoded, reference = chosen[: args.n], chosen[args.n :]
    reference_frames = data[reference].reshape(-1, data.shape[-1]).numpy()

    def fd(x: torch.Tensor) -> float:
        return frechet_distance(x.reshape(-1, x.shape[-1]).numpy(), reference_frames)

    sampler = build_sampler(OmegaConf.load(CONF / "sampler" / f"{args.sampler}.yaml"), module.diffusion)
    periods, index = draw_loops(codec, args.n, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    samples = module.sample(args.n, generator, sampler=sampler, loops=index, periods=periods, progress="samples")

    eval_model = codec.to_model(eval_latents(config))
    header = f"{'set':34s} {'n':>5}  {'notes/bar':>9}  {'quantiles 5 / 25 / 50 / 75 / 95 %':>41}  {'bars >= 8':>9}"
    print(header + f"  {'notes >= bar':>12}  {'frame FD':>8}")
    print(row("eval split, corpus events", read_eval_events(Path(config["data"]["dir"]))[0]))
    print(row("eval split, decoded", codec.melodies(eval_model, args.seed)), flush=True)
    print(row("train split, corpus events", train_events(config, codec.frames)))
    print(row(f"train split, decoded ({args.n})", codec.melodies(data[decoded], args.seed), fd(data[decoded])))
    print(row(f"samples ({args.sampler}), as drawn", codec.melodies(samples, args.seed), fd(samples)), flush=True)
    widened = spread_frames(samples, spread)
    print(row(f"samples, spread {spread:.3f}", codec.melodies(widened, args.seed), fd(widened)))


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
