"""Seconds to sample ``--n`` items at T=1000 with a denoiser, and what speeds it up on this machine.

    python benchmarks/sampling_speed.py                                    # UNet, 8x8 digits
    python benchmarks/sampling_speed.py --shape 1 28 28                    # UNet at MNIST size
    python benchmarks/sampling_speed.py --model transformer --shape 32 42  # Mittal's melody latents

Variants: ``torch.inference_mode`` (what ``GaussianDiffusion.sample`` uses), ``torch.no_grad``,
channels-last memory (images),
and ``torch.compile`` (compile time reported separately). Weights are untrained: speed does not
depend on them.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import make_config  # noqa: E402
from ddpm.diffusion import GaussianDiffusion  # noqa: E402
from ddpm.schedules import linear_betas  # noqa: E402


def timed(diffusion, denoiser, shape, context, memory_format=None) -> float:
    """Seconds for the full ancestral loop (the work of ``diffusion.sample``) under ``context``."""
    net = denoiser
    if memory_format is not None:
        net = lambda x, t: denoiser(x.contiguous(memory_format=memory_format), t)  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    with context():
        start = time.perf_counter()
        x = torch.randn(shape, generator=generator)
        for step in reversed(range(diffusion.num_timesteps)):
            x = diffusion.p_sample(net, x, torch.full((shape[0],), step), generator)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="unet")
    parser.add_argument("--shape", type=int, nargs="+", default=[1, 8, 8])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--overrides", nargs="*", default=[])
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--only-default", action="store_true", help="time the default variant alone")
    args = parser.parse_args()

    cfg = make_config([f"model={args.model}", *args.overrides], "/tmp")
    denoiser = instantiate(cfg.model, sample_shape=tuple(args.shape)).eval()
    diffusion = GaussianDiffusion(linear_betas(args.timesteps))
    shape = (args.n, *args.shape)
    print(
        f"{args.model} {tuple(args.shape)}: {sum(p.numel() for p in denoiser.parameters()) / 1e6:.2f}M params, "
        f"n={args.n}, T={args.timesteps}, {torch.get_num_threads()} threads"
    )

    results = {"inference_mode (library default)": timed(diffusion, denoiser, shape, torch.inference_mode)}
    if args.only_default:
        print(f"inference_mode (library default): {results['inference_mode (library default)']:.1f} s")
        return
    results["no_grad"] = timed(diffusion, denoiser, shape, torch.no_grad)
    if len(args.shape) == 3:
        channels_last = denoiser.to(memory_format=torch.channels_last)
        results["inference_mode + channels_last"] = timed(
            diffusion, channels_last, shape, torch.inference_mode, torch.channels_last
        )
        denoiser = denoiser.to(memory_format=torch.contiguous_format)
    if not args.skip_compile:
        compiled = torch.compile(denoiser)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(torch.randn(shape), torch.zeros(args.n))
        print(f"torch.compile warm-up: {time.perf_counter() - start:.1f} s")
        results["inference_mode + torch.compile"] = timed(diffusion, compiled, shape, torch.inference_mode)
    base = results["no_grad"]
    for name, seconds in results.items():
        print(f"{name:<34}{seconds:8.1f} s   x{base / seconds:.2f}")


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
