"""Sample quality against network evaluations for every sampler, on a melody and a digits checkpoint.

    python benchmarks/sampler_quality.py --melody-ckpt outputs/<melody run>/last.ckpt \
        --digits-ckpt outputs/<digits run>/last.ckpt [--steps 10 20 50 100 250 1000] [--device cuda]

For each model, each sampler at each step count draws ``--n`` samples (seed ``--seed``, the same
for every row) and is timed and scored. Melodies: latent Frechet distance to ``n`` held-out eval
sequences in the active dimensions, and Mittal et al.'s Consistency/Variance of pitch and duration
against their corpus melodies (as ``evaluate.py``). Digits: Frechet distance in the hidden features
of an MLP classifier of real digits, and the share it classifies with confidence >= 0.9 (as
``benchmarks/digits_quality.py``). Ancestral sampling runs once, at all T steps: the reference.
Prints a table, writes the plot (``--plot``; quality against steps, one line per sampler) and,
with ``--json``, the rows.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import restore_run  # noqa: E402
from ddpm.metrics import frechet_distance  # noqa: E402
from ddpm.music.prepare import read_eval_events  # noqa: E402
from ddpm.samplers import AncestralSampler, DDIMSampler, DPMSolverPP2MSampler, Sampler  # noqa: E402
from ddpm.sampling import eval_latents, load_checkpoint, restore  # noqa: E402

SAMPLERS = {  # name -> sampler with that many network evaluations
    "ancestral": lambda steps: AncestralSampler(),  # all T steps, run once
    "ddim": lambda steps: DDIMSampler(steps, eta=0.0, spacing="uniform"),
    "ddim_trailing": lambda steps: DDIMSampler(steps, eta=0.0, spacing="trailing"),
    "ddim_eta1": lambda steps: DDIMSampler(steps, eta=1.0, spacing="trailing"),  # ancestral on a respaced chain
    "ddim_eta1_uniform": lambda steps: DDIMSampler(steps, eta=1.0, spacing="uniform"),
    "ddim_eta05": lambda steps: DDIMSampler(steps, eta=0.5, spacing="trailing"),
    "dpmpp_2m": lambda steps: DPMSolverPP2MSampler(steps),
    "dpmpp_2m_sde": lambda steps: DPMSolverPP2MSampler(steps, sde=True),
}
OA_KEYS = ("pitch_consistency", "pitch_variance", "duration_consistency", "duration_variance")


class DigitsTask:
    """Digits checkpoint scored by a classifier of real digits: (Frechet distance, confidence share)."""

    name = "digits"
    metrics = {"classifier_fd": "classifier Frechet distance (lower is better)", "confident": "share conf >= 0.9"}

    def __init__(self, ckpt: str, n: int):
        from sklearn.neural_network import MLPClassifier

        from ddpm.data.images import load_digits_split

        self.module, self.codec = restore(load_checkpoint(ckpt), ckpt)
        self.n = n
        x_train, x_val, y_train, _ = load_digits_split()
        to01 = lambda x: ((x + 1) / 2).reshape(len(x), -1)  # noqa: E731
        self.classifier = MLPClassifier((128,), max_iter=500, random_state=0).fit(to01(x_train), y_train)
        self.reference = self.features(to01(x_val))

    def features(self, x: np.ndarray) -> np.ndarray:
        """Hidden-layer (ReLU) activations of the classifier, as ``digits_quality.features``: [N, 128]."""
        return np.maximum(0, x @ self.classifier.coefs_[0] + self.classifier.intercepts_[0])

    def score(self, x: torch.Tensor) -> dict[str, float]:
        images = self.codec.decode(x.cpu()).reshape(len(x), -1)  # [n, 64] in [0, 1]
        confident = float((self.classifier.predict_proba(images).max(1) >= 0.9).mean())
        return {"classifier_fd": frechet_distance(self.reference, self.features(images)), "confident": confident}


class MelodyTask:
    """Melody checkpoint against ``n`` held-out eval sequences: latent FD and the four OA figures."""

    name = "melody"
    metrics = {"latent_fd": "latent Frechet distance (lower is better)", "pitch_consistency": "pitch Consistency"}

    def __init__(self, ckpt: str, n: int, seed: int):
        run, self.module, self.codec = restore_run(ckpt)
        self.module.spread = 1.0  # the samplers compared on what they draw, before the run's spread calibration
        self.seed = seed
        events, _ = read_eval_events(run["run_config"]["data"]["dir"])
        latents = eval_latents(run["run_config"])  # [N, frames, 512]: the stored means
        self.n = min(n, len(events))
        if self.n < n:
            print(f"melody: the eval split has {len(events)} sequences; n={self.n}")
        gt = np.random.default_rng(0).permutation(len(events))[: self.n]  # evaluate.py's split_seed 0
        self.dims = self.codec.space.dims
        self.reference = self.flat(latents[gt])
        try:
            from ddpm.music.similarity import consistency_variance, piece_overlaps
        except ImportError:  # written alongside; without it the OA columns stay empty
            self.overlaps = None
        else:
            self.overlaps, self.consistency_variance = piece_overlaps, consistency_variance
            self.gt_overlaps = piece_overlaps(events[gt])

    def flat(self, latents: np.ndarray) -> np.ndarray:
        return latents[..., self.dims].reshape(-1, len(self.dims))  # frames x active dims

    def score(self, x: torch.Tensor) -> dict[str, float]:
        latents = self.codec.decode(x.cpu(), self.seed)  # [n, frames, 512]
        row = {"latent_fd": frechet_distance(self.reference, self.flat(latents))}
        if self.overlaps is not None:
            overlaps = self.overlaps(self.codec.melodies_from_latents(latents))
            row |= self.consistency_variance(overlaps, self.gt_overlaps)
        return row


def run(task, names: list[str], steps: list[int], args) -> list[dict]:
    """One row per (sampler, steps): evaluations, seconds to draw ``task.n`` samples, the scores."""
    module = task.module.to(args.device)
    T = module.diffusion.num_timesteps
    rows = []
    for name in names:
        for count in [T] if name == "ancestral" else [s for s in steps if s <= T]:
            sampler: Sampler = SAMPLERS[name](count)
            generator = torch.Generator().manual_seed(args.seed)
            start = time.perf_counter()
            x = module.sample(task.n, generator, batch_size=args.batch_size, sampler=sampler)
            if x.is_cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            row = {"model": task.name, "sampler": name, "steps": sampler.evaluations(module.diffusion)}
            rows.append(row | {"seconds": round(seconds, 2), "n": task.n} | task.score(x))
            print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row: dict) -> str:
    scores = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("model", "sampler", "steps", "seconds", "n"))
    return f"{row['model']:<7}{row['sampler']:<15}{row['steps']:>6}{row['seconds']:>9.1f} s  {scores}"


def plot(tasks: list, rows: list[dict], path: Path) -> None:
    """Per model and metric a panel: quality against network evaluations (log), one line per sampler."""
    panels = [(task, key, label) for task in tasks for key, label in task.metrics.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (task, key, label) in zip(axes[0], panels):
        for name in dict.fromkeys(r["sampler"] for r in rows if r["model"] == task.name):
            mine = [r for r in rows if r["model"] == task.name and r["sampler"] == name and key in r]
            if not mine:
                continue
            xs, ys = zip(*sorted((r["steps"], r[key]) for r in mine))
            if name == "ancestral":  # the reference: a line across, and its point at T
                ax.axhline(ys[0], color="k", linestyle="--", linewidth=1, label=f"ancestral ({xs[0]} steps)")
                ax.plot(xs, ys, marker="*", color="k", linestyle="none")
            else:
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations")
        ax.set_title(f"{task.name}: {label}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--melody-ckpt", help="a melody (data=melody) training checkpoint")
    parser.add_argument("--digits-ckpt", help="a digits (experiment=digits) training checkpoint")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100, 250, 1000])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--n-melody", type=int, default=256, help="melodies per row (and ground truth)")
    parser.add_argument("--n-digits", type=int, default=1000, help="digits per row")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--plot", default="docs/sampler_quality.png")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    if not (args.melody_ckpt or args.digits_ckpt):
        parser.error("give --melody-ckpt and/or --digits-ckpt")

    tasks = []
    if args.melody_ckpt:
        tasks.append(MelodyTask(args.melody_ckpt, args.n_melody, args.seed))
    if args.digits_ckpt:
        tasks.append(DigitsTask(args.digits_ckpt, args.n_digits))
    threads = torch.get_num_threads()
    print(f"{'model':<7}{'sampler':<15}{'steps':>6}{'time':>11}  scores  ({threads} threads, {args.device})")
    rows = [row for task in tasks for row in run(task, args.samplers, args.steps, args)]
    plot(tasks, rows, Path(args.plot))
    print(f"plot: {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"rows: {args.json}")


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
