"""Quality of DDPM samples on scikit-learn's 8x8 digits, scored by a classifier of real digits.

    python benchmarks/digits_quality.py --minutes 15 --n 1000

Trains UNet + DDPM (T=1000) on the digits train split for at most ``--minutes``, samples ``--n``
digits, and prints for samples, real held-out digits and an independent per-pixel Gaussian
baseline: the share classified with confidence >= 0.9 and the Frechet distance to the held-out
digits in the classifier's hidden-layer features.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import make_config  # noqa: E402
from ddpm.data.images import load_digits_split  # noqa: E402
from ddpm.metrics import frechet_distance  # noqa: E402
from ddpm.sampling import load_checkpoint, restore  # noqa: E402
from ddpm.training import train  # noqa: E402


def classifier_scores(clf: MLPClassifier, images: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(share with max class probability >= 0.9, Frechet distance to ``reference`` features)."""
    x = images.reshape(len(images), -1)
    confident = float((clf.predict_proba(x).max(1) >= 0.9).mean())
    return confident, frechet_distance(features(clf, reference), features(clf, x))


def features(clf: MLPClassifier, x: np.ndarray) -> np.ndarray:
    """Hidden-layer (ReLU) activations of the classifier: [N, hidden]."""
    return np.maximum(0, x.reshape(len(x), -1) @ clf.coefs_[0] + clf.intercepts_[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", default="outputs/bench_digits")
    parser.add_argument("--ckpt", default=None, help="skip training and score this checkpoint")
    args = parser.parse_args()

    x_train, x_val, y_train, y_val = load_digits_split()
    to01 = lambda x: (x + 1) / 2  # noqa: E731
    clf = MLPClassifier((128,), max_iter=500, random_state=0).fit(to01(x_train).reshape(len(x_train), -1), y_train)
    print(f"classifier accuracy on held-out digits: {clf.score(to01(x_val).reshape(len(x_val), -1), y_val):.3f}")

    ckpt = args.ckpt
    if ckpt is None:
        minutes = int(args.minutes)
        seconds = int(round((args.minutes - minutes) * 60))
        cfg = make_config(
            [
                "experiment=digits",
                "trainer.max_epochs=100000",
                f"++trainer.max_time=00:00:{minutes:02d}:{seconds:02d}",
                "callbacks.early_stopping=null",
                "callbacks.checkpoint.every_n_epochs=100",
                "callbacks.samples.every_n_epochs=100",
                "+trainer.enable_progress_bar=false",
            ],
            args.out,
        )
        start = time.perf_counter()
        metrics = train(cfg)
        print(f"trained {time.perf_counter() - start:.0f} s; final val/loss {metrics['val/loss']:.4f}")
        ckpt = Path(args.out) / "last.ckpt"
    module, codec = restore(load_checkpoint(ckpt), ckpt)
    start = time.perf_counter()
    samples = codec.decode(module.sample(args.n, torch.Generator().manual_seed(0), batch_size=500))
    print(f"sampled {args.n} digits at T={module.diffusion.num_timesteps} in {time.perf_counter() - start:.0f} s")
    codec.write(torch.from_numpy(samples[:100] * 2 - 1), Path(args.out), "bench_samples")

    rng = np.random.default_rng(0)
    mean, std = to01(x_train).mean(0), to01(x_train).std(0)
    baseline = np.clip(rng.normal(mean, std, size=(args.n, *mean.shape)), 0, 1)
    reference = to01(x_val)
    print(f"{'set':<28}{'conf>=0.9':>10}{'Frechet':>10}")
    for name, images in [
        ("real train digits", to01(x_train)),
        ("DDPM samples", samples),
        ("per-pixel Gaussian", baseline),
    ]:
        share, fd = classifier_scores(clf, images, reference)
        print(f"{name:<28}{share:>10.3f}{fd:>10.2f}")
    share, _ = classifier_scores(clf, reference, reference)
    print(f"{'real held-out (conf only)':<28}{share:>10.3f}{'0 (ref)':>10}")


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
