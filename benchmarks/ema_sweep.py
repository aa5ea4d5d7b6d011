"""Choose a melody run's EMA decay after one training: sample the run with several averages of its weights.

    python benchmarks/ema_sweep.py --out outputs/ema_sweep [--decays 0.99 0.998 0.999 0.9995] [--n 1024]
                                   [--seed 1] [train.py overrides ...]

Trains the main job (with the overrides) while ``ddpm.callbacks.ExtraEMA`` keeps one average of the
weights per ``--decays`` beside the module's own ``module.ema_decay`` (the main job's 0.995); a
folder that already holds such a run (``last.ckpt`` and ``extra_ema.pt``) is reused. Then writes, beside ``last.ckpt``,
``ema_<decay>.ckpt`` for each decay, the module's own included, and ``ema_raw.ckpt`` (the raw
weights): the run sampling with those weights, its spread fitted as training fits it
(``SpreadCalibration``: 512 samples of the run's sampler, seed 0). Each file is what training with
``module.ema_decay=<decay>`` gives, and loads in ``sample.py``, ``evaluate.py`` and ``serve.py``.

Printed for each, against the *train* split, as ``benchmarks/note_density.py`` measures (``--n``
samples of ``--seed``, ``fast``, loops drawn from the period prior): the fitted spread, notes per bar
as drawn and widened by it, the 95% quantile of a sequence's notes per bar and the share of bars
with 8 or more notes (widened), and the Fréchet distance of the samples' frames to the train
split's frames, as drawn and widened. The eval table compares the files on held-out tunes:
``python evaluate.py ckpt=<out>/ema_<decay>.ckpt sampler=fast draws=10 infill=false``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CONF, make_config, restore_run, train_latents  # noqa: E402
from benchmarks.note_density import bar_counts  # noqa: E402
from ddpm.calibration import spread_frames  # noqa: E402
from ddpm.callbacks.calibration import calibrate  # noqa: E402
from ddpm.checkpoint_io import atomic_save, read_checkpoint  # noqa: E402
from ddpm.metrics import frechet_distance  # noqa: E402
from ddpm.progress import to_stderr  # noqa: E402
from ddpm.sampling import build_sampler, draw_loops, restore  # noqa: E402

EXTRA = "extra_ema.pt"


def train_run(out: Path, decays: list[float], overrides: list[str]) -> None:
    """The main job with ``overrides`` in ``out``, keeping an average per decay in ``out/extra_ema.pt``."""
    from ddpm.training import train

    extra = [
        "+callbacks.extra_ema._target_=ddpm.callbacks.ExtraEMA",
        f"+callbacks.extra_ema.decays=[{','.join(str(d) for d in decays)}]",
        f"+callbacks.extra_ema.path={out / EXTRA}",
    ]
    train(make_config([*overrides, *extra], out))


def write_variants(out: Path) -> dict[str, Path]:
    """``ema_<decay>.ckpt`` per average and ``ema_raw.ckpt``: ``last.ckpt`` with those sampling weights,
    its ``module.ema_decay`` and its spread re-fitted; {label: path}."""
    base = read_checkpoint(out / "last.ckpt")
    averages = torch.load(out / EXTRA, map_location="cpu", weights_only=True)
    if averages.pop("step") != base["global_step"]:
        raise SystemExit(f"{out / EXTRA} and {out / 'last.ckpt'} are of different steps")
    weights = {key.split(".", 1)[1]: value for key, value in base["state_dict"].items() if key.startswith("denoiser.")}
    own = {key.split(".", 1)[1]: value for key, value in base["state_dict"].items() if key.startswith("ema.")}
    variants = {str(d): sd for d, sd in sorted(averages.items())} | {
        str(base["run_config"]["module"]["ema_decay"]): own,
        "raw": weights,
    }
    data = train_latents(base["run_config"])
    calibration = base["run_config"]["callbacks"].get("calibration")
    paths = {}
    for label, state in variants.items():
        ckpt = dict(base, state_dict=dict(base["state_dict"]), run_config=dict(base["run_config"]))
        decay = None if label == "raw" else float(label)
        ckpt["run_config"]["module"] = dict(ckpt["run_config"]["module"], ema_decay=decay)
        if decay is None:  # no average: the module samples with its weights
            ckpt["state_dict"] = {key: value for key, value in base["state_dict"].items() if not key.startswith("ema.")}
        else:
            ckpt["state_dict"].update({f"ema.{key}": value for key, value in state.items()})
        path = out / f"ema_{label}.ckpt"
        module, _ = restore(ckpt, path)
        ckpt["spread"] = 1.0
        if calibration:
            sampler = build_sampler(OmegaConf.create(calibration["sampler"]), module.diffusion)
            ckpt["spread"], _ = calibrate(module, data, calibration["n"], calibration["seed"], sampler)
        atomic_save(ckpt, path)
        paths[label] = path
    return paths


def measure(path: Path, data: torch.Tensor, n: int, seed: int) -> str:
    """One printed row: spread, notes per bar, dense tail and frame FD of ``n`` samples, against the train
    split ``data`` [N, frames, D] (model space)."""
    _, module, codec = restore_run(path)
    spread, module.spread = module.spread, 1.0
    reference = data[np.random.default_rng(seed).permutation(len(data))[n:]].reshape(-1, data.shape[-1]).numpy()
    sampler = build_sampler(OmegaConf.load(CONF / "sampler" / "fast.yaml"), module.diffusion)
    periods, index = draw_loops(codec, n, seed)
    drawn = module.sample(n, torch.Generator().manual_seed(seed), sampler=sampler, loops=index, periods=periods)
    widened = spread_frames(drawn, spread)
    density = [bar_counts(codec.melodies(x, seed)) for x in (drawn, widened)]
    fd = [frechet_distance(x.reshape(-1, x.shape[-1]).numpy(), reference) for x in (drawn, widened)]
    per_sequence = density[1].mean(axis=1)
    return (
        f"{spread:6.3f}  {density[0].mean():5.2f}  {density[1].mean():5.2f}  {np.quantile(per_sequence, 0.95):6.2f}"
        f"  {(density[1] >= 8).mean():5.3f}  {fd[0]:5.2f}  {fd[1]:5.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--decays", nargs="+", type=float, default=[0.99, 0.998, 0.999, 0.9995])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=1)
    args, overrides = parser.parse_known_args(argv)
    to_stderr()
    if not ((args.out / "last.ckpt").is_file() and (args.out / EXTRA).is_file()):
        train_run(args.out, args.decays, overrides)
    paths = write_variants(args.out)
    data = train_latents(read_checkpoint(args.out / "last.ckpt")["run_config"])
    print("EMA decay  spread  notes/bar drawn  widened  95% widened  bars>=8 widened  frame FD drawn  widened")
    for label, path in sorted(paths.items(), key=lambda item: -1.0 if item[0] == "raw" else float(item[0])):
        print(f"{label:9s}  {measure(path, data, args.n, args.seed)}", flush=True)


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
