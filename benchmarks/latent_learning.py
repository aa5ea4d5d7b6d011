"""Learning check on synthetic latent sequences whose distribution is known.

    python benchmarks/latent_learning.py --minutes 8

Data: a mixture of 4 Gaussian "styles"; within a sequence the frames follow an AR(1) process
(correlation 0.9 between neighbouring frames) around the style's mean, so a model must learn
both the modes and the temporal correlation. Written as Mittal-format TFRecords and trained
through the normal ``data=mvae model=transformer`` path. Prints the Frechet distance and RBF MMD
to held-out data for: DDPM samples, the noise baseline (standard normal in model space, mapped
back), and the train split itself (the floor a perfect model approaches).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import make_config  # noqa: E402
from ddpm.io.tfrecords import write_latents  # noqa: E402
from ddpm.metrics import frechet_distance, mmd_rbf  # noqa: E402
from ddpm.sampling import load_checkpoint, restore  # noqa: E402
from ddpm.training import train  # noqa: E402


def synthetic_sequences(n: int, frames: int, dims: int, rng: np.random.Generator, rho: float = 0.9) -> np.ndarray:
    """[n, frames, dims]: style mean + AR(1) deviations with unit stationary variance x 0.5."""
    means = np.random.default_rng(1234).normal(0, 2, (4, dims))  # fixed styles
    style = rng.integers(0, 4, n)
    dev = np.empty((n, frames, dims))
    dev[:, 0] = rng.normal(0, 1, (n, dims))
    for f in range(1, frames):
        dev[:, f] = rho * dev[:, f - 1] + np.sqrt(1 - rho**2) * rng.normal(0, 1, (n, dims))
    return (means[style][:, None] + 0.5 * dev).astype(np.float32)


def features(x: np.ndarray) -> np.ndarray:
    """Flattened sequences plus frame-to-frame differences: modes and temporal correlation both count."""
    return np.concatenate([x.reshape(len(x), -1), np.diff(x, axis=1).reshape(len(x), -1)], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--dims", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--n-eval", type=int, default=1000)
    parser.add_argument("--out", default="outputs/bench_latents")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    data_dir = Path(tempfile.mkdtemp())
    train_x = synthetic_sequences(args.n_train, args.frames, args.dims, rng)
    eval_x = synthetic_sequences(args.n_eval, args.frames, args.dims, rng)
    for i, shard in enumerate(np.array_split(train_x, 4)):
        write_latents(data_dir / f"train-{i}.tfrecord", shard)
    write_latents(data_dir / "eval-0.tfrecord", eval_x)

    minutes, seconds = int(args.minutes), int(round((args.minutes % 1) * 60))
    cfg = make_config(
        [
            "data=mvae",
            "model=transformer",
            f"data.dir={data_dir}",
            f"data.input_shape=[{args.frames},{args.dims}]",
            "data.batch_size=128",
            "model.num_layers=4",
            "model.mlp_dims=512",
            "model.num_heads=4",
            "diffusion.betas._target_=ddpm.schedules.mittal_betas",
            "diffusion.time_condition=noise_level",
            "trainer.max_epochs=100000",
            f"++trainer.max_time=00:00:{minutes:02d}:{seconds:02d}",
            "callbacks.early_stopping=null",
            "callbacks.checkpoint.every_n_epochs=50",
            "callbacks.samples.every_n_epochs=1000",
            "+trainer.enable_progress_bar=false",
        ],
        args.out,
    )
    start = time.perf_counter()
    metrics = train(cfg)
    print(f"trained {time.perf_counter() - start:.0f} s; final val/loss {metrics['val/loss']:.4f}")

    ckpt = Path(args.out) / "last.ckpt"
    module, codec = restore(load_checkpoint(ckpt), ckpt)
    n = args.n_eval
    start = time.perf_counter()
    samples = codec.decode(module.sample(n, torch.Generator().manual_seed(0), batch_size=500))
    print(f"sampled {n} sequences at T=1000 in {time.perf_counter() - start:.0f} s")
    noise = codec.decode(torch.randn((n, args.frames, args.dims), generator=torch.Generator().manual_seed(1)))
    ref = features(eval_x)
    print(f"{'set vs held-out':<26}{'Frechet':>10}{'MMD_rbf':>10}")
    for name, x in (("DDPM samples", samples), ("noise baseline", noise), ("train split (floor)", train_x[:n])):
        print(f"{name:<26}{frechet_distance(ref, features(x)):>10.3f}{mmd_rbf(ref, features(x)):>10.4f}")

    def lag1(x: np.ndarray) -> float:
        pairs = [(f, d) for f in range(args.frames - 1) for d in range(args.dims)]
        return float(np.mean([np.corrcoef(x[:, f, d], x[:, f + 1, d])[0, 1] for f, d in pairs]))

    print(f"mean lag-1 frame correlation: held-out {lag1(eval_x):.3f}, samples {lag1(samples):.3f}, ", end="")
    print(f"noise {lag1(noise):.3f}")


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
