"""Does a melody model keep the loops of real music? Two checks on the looped eval sequences.

    python benchmarks/loop_diagnostics.py --ckpt outputs/<run>/last.ckpt [--steps 20 200 400] [--n 128]

The eval sequences whose latent frames repeat exactly with a period of at most ``--max-period``
frames (a short tune played again to fill 32 bars) are the test set. Printed:

1. **Uses the copies**: the model's x0 estimate at step t, its mean squared error when each copy of
   a frame carries its own noise (the copies are extra evidence) divided by the error when all
   copies carry the same noise (no extra evidence). Below 1: the model averages what the copies say.
2. **Keeps the loop**: each sequence is noised to step t and the model's ancestral chain is run back
   to step 0; for the output, the mean distance between frames one period apart divided by the mean
   distance between any two of its frames (0: still the loop; about 1: no trace of it), its median
   and the share of sequences below 0.2.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import restore_run  # noqa: E402
from ddpm.progress import Progress, to_stderr  # noqa: E402
from ddpm.sampling import eval_latents  # noqa: E402


def smallest_period(x: torch.Tensor, max_period: int) -> int:
    """The smallest p <= max_period with frame i == frame i + p for all i, else 0: x is [frames, dims]."""
    for p in range(1, min(max_period, len(x) - 1) + 1):
        if torch.allclose(x[p:], x[:-p], atol=1e-5):
            return p
    return 0


def loop_ratio(x: torch.Tensor, period: torch.Tensor) -> torch.Tensor:
    """Per sequence: mean distance of frames one period apart / mean distance of two distinct frames."""
    out = []
    for s, p in zip(x, period.tolist()):
        frames = len(s)
        typical = torch.cdist(s, s).sum() / (frames * (frames - 1))
        out.append((s[p:] - s[:-p]).norm(dim=-1).mean() / typical)
    return torch.stack(out)


def shared_noise(noise: torch.Tensor, period: torch.Tensor) -> torch.Tensor:
    """The noise of frame i % p copied to every frame i: each copy of a frame gets the same noise."""
    out = noise.clone()
    for k, p in enumerate(period.tolist()):
        index = torch.arange(noise.shape[1]) % p
        out[k] = noise[k, index]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--steps", nargs="+", type=int, default=[20, 200, 400])
    parser.add_argument("--x0-steps", nargs="+", type=int, default=[50, 200, 400, 600, 800])
    parser.add_argument("--n", type=int, default=128, help="looped sequences used (at most)")
    parser.add_argument("--max-period", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    to_stderr()

    ckpt, module, codec = restore_run(args.ckpt)
    x0 = codec.to_model(eval_latents(ckpt["run_config"])).float()
    period = torch.tensor([smallest_period(s, args.max_period) for s in x0])
    keep = period > 0
    loops, period = x0[keep][: args.n], period[keep][: args.n]
    print(f"{int(keep.sum())} of {len(x0)} eval sequences loop with a period <= {args.max_period}; using {len(loops)}")
    print(f"model-space std of the data: {x0.std().item():.3f}")
    module.eval()
    diffusion = module.diffusion
    generator = torch.Generator().manual_seed(args.seed)

    print("\nuses the copies: x0 MSE, own noise per copy / same noise on every copy")
    for t in args.x0_steps:
        steps = torch.full((len(loops),), t)
        noise = torch.randn(loops.shape, generator=generator)
        errors = []
        for eps in (noise, shared_noise(noise, period)):
            x_t = diffusion.q_sample(loops, steps, eps)
            with torch.no_grad():
                chain, cond = module.chain_denoiser(), diffusion.model_condition(steps)
                eps_hat = chain(x_t, cond)
                if module.self_condition:  # the second pass reads the first's x_0, as in validation
                    eps_hat = chain(x_t, cond)
                x0_hat = diffusion.predict_start_from_noise(x_t, steps, eps_hat)
            errors.append((x0_hat - loops).square().mean().item())
        print(f"  t = {t:4d}: {errors[0]:.4f} / {errors[1]:.4f} = {errors[0] / errors[1]:.2f}")

    print("\nkeeps the loop: noised to step t, ancestral chain back to 0")
    for t0 in args.steps:
        x = diffusion.q_sample(loops, torch.full((len(loops),), t0), torch.randn(loops.shape, generator=generator))
        counter = Progress(f"from t = {t0}:", t0 + 1, "steps")
        net = module.chain_denoiser()
        with torch.no_grad():
            for t in range(t0, -1, -1):
                x = diffusion.p_sample(net, x, torch.full((len(loops),), t), generator)
                counter.step()
        ratio = loop_ratio(x, period)
        print(
            f"  from t = {t0:4d}: distance ratio median {ratio.median().item():.2f}, "
            f"{(ratio < 0.2).float().mean().item():.0%} below 0.2"
        )


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
