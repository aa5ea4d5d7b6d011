"""Training throughput: the Lightning training step against a bare PyTorch loop, same model and data.

    python benchmarks/train_overhead.py                       # UNet on 8x8 digits, batch 64
    python benchmarks/train_overhead.py --mittal 1024   # TransformerDDPM at Mittal's setting, 32x42 latents
    python benchmarks/train_overhead.py --mittal 1024 --accelerator gpu --precision bf16-mixed [--compile]

Both loops do the same work per step: diffusion loss, backward, gradient clipping at 1.0, AdamW,
EMA update. Each mode runs in its own process (so peak memory is its own), alternating for
``--rounds``; the best round of each is kept. Prints samples/s, peak RSS, and the ratio.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import make_config  # noqa: E402


def run_mode(mode: str, overrides: list[str], steps: int, warmup: int, device: dict) -> dict:
    """One mode's samples/s; ``device``: ``accelerator`` (cpu | gpu), ``precision`` (Lightning's
    names: 32-true, bf16-mixed), ``compile`` (``torch.compile`` the denoiser in place, as
    ``train.py compile=true`` does)."""
    import lightning as L
    from hydra.utils import instantiate

    from ddpm.training import build_model

    torch.manual_seed(0)
    out = tempfile.mkdtemp()
    cfg = make_config(overrides, out)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    codec = instantiate(cfg.codec)
    codec.fit(datamodule)
    module = build_model(cfg, codec)
    if device["compile"]:
        module.denoiser.compile()
    batch_size = datamodule.batch_size
    cuda = device["accelerator"] == "gpu"

    if mode == "bare":
        if cuda:
            module.to("cuda")
        autocast = torch.autocast("cuda", torch.bfloat16, enabled=cuda and device["precision"] == "bf16-mixed")
        loader = datamodule.train_dataloader()
        optimizer = module.optimizer(params=module.denoiser.parameters())
        step, start = 0, None
        while step < warmup + steps:
            for batch in loader:
                batch = batch.to(module.device, non_blocking=True)
                if step == warmup:
                    if cuda:
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                with autocast:
                    loss = module.diffusion.loss(module.denoiser, batch).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(module.denoiser.parameters(), 1.0)
                optimizer.step()
                module.on_train_batch_end(None, batch, step)  # the same EMA update
                step += 1
                if step == warmup + steps:
                    break
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    else:

        class Clock(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == warmup:
                    self.start = time.perf_counter()

            def on_train_end(self, trainer, pl_module):
                if cuda:
                    torch.cuda.synchronize()
                self.seconds = time.perf_counter() - self.start

        clock = Clock()
        trainer = L.Trainer(
            accelerator=device["accelerator"],
            devices=1,
            precision=device["precision"],
            max_steps=warmup + steps,
            gradient_clip_val=1.0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            callbacks=[clock],
            max_epochs=-1,
        )
        trainer.fit(module, datamodule=datamodule)
        seconds = clock.seconds
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "samples_per_s": steps * batch_size / seconds, "peak_rss_mib": peak_mib, "batch": batch_size}


def mittal_data(n: int) -> list[str]:
    """Random Mittal-format shards (32 x 512) and a 42-dim slice list; the overrides that use them."""
    import pickle

    import numpy as np

    from ddpm.io.tfrecords import write_latents

    root = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    write_latents(root / "train-0.tfrecord", rng.standard_normal((n, 32, 512), np.float32))
    write_latents(root / "eval-0.tfrecord", rng.standard_normal((64, 32, 512), np.float32))
    with open(root / "slice.pkl", "wb") as f:
        pickle.dump(sorted(rng.choice(512, 42, replace=False).tolist()), f)
    return ["experiment=mittal_melody", f"data.dir={root}", f"data.slice_dims={root / 'slice.pkl'}"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--overrides", nargs="*", default=[])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mittal", type=int, default=0, help="write N random 32x512 records and use mittal_melody")
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--precision", default="32-true", help="32-true | bf16-mixed (autocast, cpu or gpu)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the denoiser (warm-up pays it)")
    parser.add_argument("--mode", choices=["bare", "lightning"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mittal and not args.mode:
        args.overrides = [*mittal_data(args.mittal), *args.overrides]
    device = {"accelerator": args.accelerator, "precision": args.precision, "compile": args.compile}
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.overrides, args.steps, args.warmup, device)))
        return
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for mode in ("bare", "lightning"):
            cmd = [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--accelerator",
                args.accelerator,
                "--precision",
                args.precision,
                *(["--compile"] if args.compile else []),
                "--overrides",
                *args.overrides,
            ]
            res = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            )
            if mode not in best or res["samples_per_s"] > best[mode]["samples_per_s"]:
                best[mode] = res
    print(
        f"config overrides: {' '.join(args.overrides) or '(defaults)'}; batch {best['bare']['batch']}, "
        f"{args.steps} timed steps after {args.warmup} warm-up, best of {args.rounds}, "
        f"{torch.get_num_threads()} threads; {args.accelerator}"
        f"{' (' + torch.cuda.get_device_name() + ')' if args.accelerator == 'gpu' else ''}, {args.precision}"
        f"{', torch.compile' if args.compile else ''}"
    )
    for mode in ("bare", "lightning"):
        print(
            f"{mode:<10} {best[mode]['samples_per_s']:9.1f} samples/s   peak RSS {best[mode]['peak_rss_mib']:7.0f} MiB"
        )
    print(f"ratio lightning/bare: {best['lightning']['samples_per_s'] / best['bare']['samples_per_s']:.3f}")


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
