"""benchmarks/ema_sweep.py: one tiny melody run with an extra average, and the files sampling with each."""

import torch

from benchmarks import ema_sweep
from benchmarks._common import train_latents
from ddpm.sampling import load_checkpoint, restore
from tests.helpers import melody_overrides


def test_sweep_files_sample_with_each_average_and_the_spread_training_fits(melody_run, tmp_path):
    root, _ = melody_run
    out = tmp_path / "run"
    ema_sweep.train_run(out, [0.05], melody_overrides(root))  # 2 steps: only a cap below the warm-up (0.1) binds
    paths = ema_sweep.write_variants(out)
    last = torch.load(out / "last.ckpt", weights_only=False)
    own = str(last["run_config"]["module"]["ema_decay"])  # the main job's 0.995
    assert set(paths) == {"0.05", own, "raw"}
    extra = torch.load(out / ema_sweep.EXTRA, weights_only=True)
    files = {label: torch.load(path, weights_only=False) for label, path in paths.items()}
    names = [key.split(".", 1)[1] for key in last["state_dict"] if key.startswith("denoiser.")]
    # each file's sampling weights: the extra average, the module's own average, the raw weights
    assert all(torch.equal(files["0.05"]["state_dict"][f"ema.{n}"], extra[0.05][n]) for n in names)
    assert all(torch.equal(files[own]["state_dict"][f"ema.{n}"], last["state_dict"][f"ema.{n}"]) for n in names)
    assert not any(key.startswith("ema.") for key in files["raw"]["state_dict"])
    assert any(not torch.equal(extra[0.05][n], last["state_dict"][f"ema.{n}"]) for n in names)
    decays = [files[label]["run_config"]["module"]["ema_decay"] for label in ("0.05", own, "raw")]
    assert decays == [0.05, float(own), None]
    # the spread is fitted as training fits it: the module's own average gets training's value exactly
    assert last["spread"] != 1.0 and files[own]["spread"] == last["spread"]
    assert files["0.05"]["spread"] != last["spread"]
    module, _ = restore(load_checkpoint(paths["raw"]), paths["raw"])
    assert module.ema is None and module.spread == files["raw"]["spread"]
    row = ema_sweep.measure(paths["0.05"], train_latents(last["run_config"]), n=4, seed=1)
    assert f"{files['0.05']['spread']:6.3f}" in row and len(row.split()) == 7
