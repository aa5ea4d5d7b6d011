"""What narrows the samples? Train main-job variants, score each with evaluate.py's table.

    python benchmarks/gap_sweep.py --variants base continuous long --out outputs/gap_sweep [--gpu]

Each variant is the main job (``experiment=folk``) plus a few overrides, trained from the same
seed on the same latents; each trained model is then scored (``ddpm.evaluation.evaluate``) under
every sampling-time choice given (``--sigmas``, ``--temperatures``). Prints one line per
(variant, sigma, temperature): the four Consistency/Variance figures of unconditional DDPM
samples and of DDPM infilling, notes per bar, and training time. Tables land in
``<out>/<variant>/eval/<name>/``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CONF, make_config  # noqa: E402
from ddpm.evaluation import evaluate  # noqa: E402
from ddpm.training import train  # noqa: E402

VARIANTS = {
    "base": [],
    "mittal_layout": ["model.time_in_attention=false", "model.relative_attention=false", "data.normalize=minmax"],
    "session9": ["model.relative_attention=false", "data.normalize=minmax"],  # the main job before session 10
    "minmax": ["data.normalize=minmax"],  # Mittal's scaling of the latents
    "absolute_only": ["model.relative_attention=false"],
    "budget26": ["trainer.max_epochs=400", "trainer.max_time=00:00:26:00"],
    "continuous": ["diffusion.time_condition=continuous_noise_level"],
    "continuous5000": ["diffusion.time_condition=continuous_noise_level", "diffusion.noise_level_scale=5000"],
    "long": ["trainer.max_epochs=120", "trainer.max_time=null"],
    "wide": ["model.mlp_dims=1024", "model.num_layers=6"],
    "lr3e-4": ["module.optimizer.lr=3e-4"],
}
COLUMNS = ("pitch_consistency", "pitch_variance", "duration_consistency", "duration_variance")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="+", default=["base", "continuous"], choices=sorted(VARIANTS))
    parser.add_argument("--out", default="outputs/gap_sweep")
    parser.add_argument("--gpu", action="store_true", help="train with trainer=gpu and evaluate on cuda")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--sigmas", nargs="+", default=["posterior"])
    parser.add_argument("--temperatures", nargs="+", type=float, default=[0.0])
    parser.add_argument("--sampler", nargs="*", default=[], help="evaluate.py sampler overrides, e.g. sampler=ddim")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every variant")
    args = parser.parse_args()

    lines = []
    for variant in args.variants:
        run = Path(args.out) / variant
        ckpt = run / "last.ckpt"
        overrides = VARIANTS[variant] + args.extra + (["trainer=gpu"] if args.gpu else [])
        train_seconds = None
        if not ckpt.exists():
            start = time.perf_counter()
            metrics = train(make_config(overrides + ["callbacks.samples.every_n_epochs=1000"], run))
            train_seconds = time.perf_counter() - start
            print(f"[{variant}] trained in {train_seconds:.0f} s: {metrics}", flush=True)
        for sigma in args.sigmas:
            for temperature in args.temperatures:
                name = f"{sigma}_t{temperature:g}"
                with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
                    cfg = compose(
                        "evaluate",
                        overrides=[
                            f"ckpt={ckpt}",
                            f"n={args.n}",
                            f"sigma={sigma}",
                            f"temperature={temperature}",
                            f"name={name}",
                            f"device={'cuda' if args.gpu else 'cpu'}",
                            *args.sampler,
                        ],
                    )
                files = evaluate(cfg)
                rows = {r["set"]: r for r in json.loads(files["json"].read_text())["rows"]}
                for row_name in ("DDPM", "DDPM infilling"):
                    r = rows[row_name]
                    figures = " ".join(f"{r[c]:.3f}" for c in COLUMNS)
                    line = f"{variant:<15}{sigma:<10}{temperature:<5g}{row_name:<16}{figures}  {r['notes_per_bar']:.2f}"
                    line += f"  train {train_seconds:.0f} s" if train_seconds else ""
                    lines.append(line)
                    print(line, flush=True)
    print("\nvariant        sigma     temp row             pitchC pitchV durC  durV   notes/bar")
    print("\n".join(lines))


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
