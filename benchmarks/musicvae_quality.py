"""MusicVAE reconstruction on held-out tunes: greedy decoding from mu.

    python benchmarks/musicvae_quality.py [--ckpt checkpoints/musicvae.pt] [--meters all]

Prints token accuracy (share of the 32 events per window decoded exactly), the share of 2-bar
windows reconstructed exactly, both for the held-out and (a sample of) the train windows, and
the number of active latent dimensions (mean KL > 0.1 nats), and the held-out accuracy when only
those dims of mu are kept and the rest drawn from N(0, 1), which is what decoding diffusion
samples does (the diffusion model sees only the active dims). Then the same two held-out
accuracies per meter (``--meters all`` reads tunes of every meter; the default is the corpus
config's).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CONF  # noqa: E402
from ddpm.music.prepare import active_dims, windows  # noqa: E402
from ddpm.music.vae_io import encode_windows, load_musicvae, reconstruction  # noqa: E402


def main() -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", default="checkpoints/musicvae.pt")
    parser.add_argument("--train-sample", type=int, default=5000)
    parser.add_argument("--meters", choices=["duple", "all"], default=None, help="default: conf/corpus/folk.yaml's")
    args = parser.parse_args()
    corpus = OmegaConf.load(CONF / "corpus" / "folk.yaml")
    if args.meters:
        corpus.meters = args.meters
    train, evals, report = instantiate(corpus).split()
    model = load_musicvae(args.ckpt)
    torch.set_grad_enabled(False)
    eval_windows = windows(evals)
    train_windows = windows(train)
    train_windows = train_windows[np.random.default_rng(0).permutation(len(train_windows))[: args.train_sample]]
    print(f"corpus: {report['tunes']} tunes, {report['windows']} windows; ", end="")
    print(f"eval {len(evals)} tunes / {len(eval_windows)} windows")
    print(f"{'split':<8}{'token acc':>10}{'exact windows':>15}")
    for name, ev in (("eval", eval_windows), ("train", train_windows)):
        acc, exact = reconstruction(model, ev)
        print(f"{name:<8}{acc:>10.4f}{exact:>15.4f}")
    mu, sigma = encode_windows(model, windows(train))
    for threshold in (0.1, 0.5, 1.0):
        print(f"active dims (mean KL > {threshold} nats): {len(active_dims(mu, sigma, threshold))} of {mu.shape[1]}")
    keep = active_dims(mu, sigma, 0.1)
    acc, exact = reconstruction(model, eval_windows, keep)
    print("eval, active dims (> 0.1 nats) of mu only, the rest N(0, 1) as the diffusion chain decodes: ", end="")
    print(f"token acc {acc:.4f}, exact windows {exact:.4f}")
    print(f"{'meter':<8}{'tunes':>7}{'windows':>9}{'acc (mu)':>10}{'exact':>8}{'acc (active dims)':>19}")
    for meter in sorted({t.meter for t in evals}, key=lambda m: -sum(t.meter == m for t in evals)):
        tunes = [t for t in evals if t.meter == meter]
        ev = windows(tunes)
        acc, exact = reconstruction(model, ev)
        acc_active, _ = reconstruction(model, ev, keep)
        print(f"{meter:<8}{len(tunes):>7}{len(ev):>9}{acc:>10.4f}{exact:>8.4f}{acc_active:>19.4f}")


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
