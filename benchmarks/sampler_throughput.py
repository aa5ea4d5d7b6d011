"""Sampling throughput of the Mittal-size TransformerDDPM (32 frames x 42 dims) for each sampler.

    python benchmarks/sampler_throughput.py [--device cuda] [--batches 64 256] [--ancestral-steps 1000]

Random weights (speed does not depend on them). For each batch size: network evaluations per
second and sequences per second of 1000-step ancestral sampling, DDIM at 50 steps and
DPM-Solver++ 2M at 20 steps, and each one's speed-up over ancestral in the same run. With
``--ancestral-steps`` below 1000 the ancestral run is timed over that many steps and its
sequences per second extrapolated to 1000 steps (the cost per step is constant); the output says so.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import make_config  # noqa: E402
from ddpm.samplers import AncestralSampler, DDIMSampler, DPMSolverPP2MSampler  # noqa: E402


class Truncated(AncestralSampler):
    """Ancestral sampling over the first ``limit`` of the T steps (for timing on slow machines)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def timesteps(self, num_timesteps: int) -> list[int]:
        return super().timesteps(num_timesteps)[: self.limit]


def time_sampler(sampler, diffusion, denoiser, shape, device) -> tuple[float, int]:
    evaluations = 0
    start = time.perf_counter()
    for _ in sampler.sample_progressive(diffusion, denoiser, shape, torch.Generator().manual_seed(0), device):
        evaluations += 1
        if isinstance(sampler, Truncated) and evaluations > sampler.limit:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, evaluations - 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--ancestral-steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = make_config(["experiment=mittal_melody", "data.slice_dims=null"], "/tmp/throughput")
    denoiser = instantiate(cfg.model, sample_shape=(32, 42)).to(device).eval()
    diffusion = instantiate(cfg.diffusion, clip_x_start=False).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"TransformerDDPM {sum(p.numel() for p in denoiser.parameters()) / 1e6:.1f} M params, 32 x 42, on {name}")
    samplers = {
        "ancestral 1000": AncestralSampler() if args.ancestral_steps >= 1000 else Truncated(args.ancestral_steps),
        "ddim 50": DDIMSampler(50),
        "dpmpp_2m 20": DPMSolverPP2MSampler(20),
    }
    print(f"{'batch':>6} {'sampler':<16}{'evals/s':>9}{'seq/s':>10}{'x ancestral':>13}")
    for batch in args.batches:
        shape = (batch, 32, 42)
        time_sampler(DDIMSampler(5), diffusion, denoiser, shape, device)  # warm-up
        base = None
        for label, sampler in samplers.items():
            seconds, evaluations = time_sampler(sampler, diffusion, denoiser, shape, device)
            per_eval = seconds / evaluations
            total = per_eval * (1000 if label.startswith("ancestral") else evaluations)
            seq_s = batch / total
            base = base or seq_s
            note = f"  (timed over {evaluations} steps)" if evaluations < 1000 and label.startswith("ancestral") else ""
            print(f"{batch:>6} {label:<16}{1 / per_eval:>9.1f}{seq_s:>10.2f}{seq_s / base:>13.1f}{note}", flush=True)


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
