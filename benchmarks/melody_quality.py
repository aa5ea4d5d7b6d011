"""Generated melodies against held-out melodies, with prior samples as the baseline.

    python benchmarks/melody_quality.py --ckpt outputs/<run>/last.ckpt [--n 256]

Sets: DDPM samples (decoded with the MusicVAE), prior samples (z ~ N(0, I) for every frame),
and the held-out eval sequences (their latents; melodies are the MusicVAE's greedy decoding of
them, so all three pass through the same decoder). Latent statistics are over frames, in the
active dimensions: Frechet distance and RBF MMD to held-out. Melody statistics per 32-bar
melody: notes per bar, pitch range (semitones), distance between the aggregate pitch-class
histograms (total variation), and the share of notes outside the melody's prevailing key (the
major scale holding most of its notes).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import restore_run  # noqa: E402
from ddpm.metrics import frechet_distance, mmd_rbf  # noqa: E402
from ddpm.music.events import events_to_notes  # noqa: E402
from ddpm.sampling import eval_latents  # noqa: E402

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])


def melody_stats(melody: np.ndarray) -> dict[str, float]:
    pitches = np.array([n.pitch for n in events_to_notes(melody)])
    bars = len(melody) / 16
    if len(pitches) == 0:
        return {"notes_per_bar": 0.0, "range": 0.0, "out_of_key": 0.0, "pc": np.zeros(12)}
    pc = np.bincount(pitches % 12, minlength=12).astype(float)
    in_key = max(pc[(MAJOR + k) % 12].sum() for k in range(12))
    return {
        "notes_per_bar": len(pitches) / bars,
        "range": float(pitches.max() - pitches.min()),
        "out_of_key": 1 - in_key / pc.sum(),
        "pc": pc,
    }


def summarize(melodies: np.ndarray) -> dict:
    stats = [melody_stats(m) for m in melodies]
    pc = sum(s["pc"] for s in stats)
    return {k: float(np.mean([s[k] for s in stats])) for k in ("notes_per_bar", "range", "out_of_key")} | {
        "pc_hist": pc / max(pc.sum(), 1)
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ckpt, module, codec = restore_run(args.ckpt)
    dims = codec.space.dims
    held_out = eval_latents(ckpt["run_config"])  # unnormalized, every dim: [N, frames, 512]
    held_out = held_out[np.random.default_rng(0).permutation(len(held_out))[: args.n]]
    n = len(held_out)
    generated = codec.decode(module.sample(n, torch.Generator().manual_seed(args.seed)))  # [n, frames, 512]
    prior = np.random.default_rng(args.seed + 1).standard_normal(generated.shape).astype(np.float32)
    held_full = codec.decode(codec.to_model(held_out))  # the active dims kept, the rest N(0, 1)

    print(f"{n} sequences of {generated.shape[1]} frames; {len(dims)} active dims")
    flat = lambda x: x[..., dims].reshape(-1, len(dims))  # noqa: E731
    ref = flat(held_full)
    print(f"{'set':<14}{'latent FD':>10}{'MMD':>8}{'notes/bar':>11}{'range':>7}{'PC dist':>9}{'out-of-key':>12}")
    ref_stats = None
    rows = []
    for name, latents in (("held-out", held_full), ("DDPM", generated), ("prior N(0,I)", prior)):
        melodies = codec.melodies_from_latents(latents)
        stats = summarize(melodies)
        ref_stats = ref_stats or stats
        fd = frechet_distance(ref, flat(latents)) if name != "held-out" else 0.0
        mmd = mmd_rbf(ref[::4], flat(latents)[::4]) if name != "held-out" else 0.0
        pc_dist = 0.5 * np.abs(stats["pc_hist"] - ref_stats["pc_hist"]).sum()
        rows.append((name, fd, mmd, stats["notes_per_bar"], stats["range"], pc_dist, stats["out_of_key"]))
    for name, fd, mmd, density, rng, pc_dist, ook in rows:
        print(f"{name:<14}{fd:>10.1f}{mmd:>8.4f}{density:>11.2f}{rng:>7.1f}{pc_dist:>9.3f}{ook:>12.3f}")


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
