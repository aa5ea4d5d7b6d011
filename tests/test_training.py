import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from ddpm.checkpoint_io import AtomicCheckpointIO, read_checkpoint
from ddpm.sampling import CheckpointError, load_checkpoint
from ddpm.training import build_model, discard_unused_run, train
from tests.helpers import FAST, compose_train

ROOT = Path(__file__).resolve().parents[1]
TINY_UNET = ["experiment=digits", "model.base_channels=8", "model.channel_mults=[1,2]"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    metrics = train(compose_train(FAST + TINY_UNET, out))
    assert np.isfinite(metrics["train/loss_epoch"]) and np.isfinite(metrics["val/loss"])
    return out


def test_train_writes_checkpoints_samples_loss_plot_and_tensorboard(run_dir):
    assert (run_dir / "diffusion_model_000.ckpt").is_file()
    assert (run_dir / "last.ckpt").is_file()
    assert (run_dir / "samples" / "epoch_000.png").stat().st_size > 0
    assert np.load(run_dir / "samples" / "epoch_000.npz")["samples"].shape == (4, 1, 8, 8)
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert not list(run_dir.glob("*.tmp"))


def test_checkpoint_holds_weights_and_config_not_diffusion_buffers(run_dir):
    ckpt = load_checkpoint(run_dir / "last.ckpt")
    assert ckpt["run_config"]["model"]["_target_"] == "ddpm.denoisers.UNet"
    keys = ckpt["state_dict"].keys()
    assert any(k.startswith("denoiser.") for k in keys) and any(k.startswith("ema.") for k in keys)
    assert not any(k.startswith("diffusion.") for k in keys)


def test_compile_trains_the_same_model_under_the_same_names(tmp_path, monkeypatch):
    """``compile=true`` compiles the denoiser in place: the same losses and weights (to float error), the
    same checkpoint keys (no ``_orig_mod.``), and dynamo did build graphs."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # not the cache other runs share

    tiny = FAST + ["experiment=digits", "model=dense", "model.mlp_dims=32", "model.emb_dim=16", "logger=none"]
    plain = train(compose_train(tiny, tmp_path / "plain"))
    counters.clear()
    compiled = train(compose_train(tiny + ["compile=true"], tmp_path / "compiled"))
    assert counters["stats"]["unique_graphs"] > 0
    assert compiled["train/loss_epoch"] == pytest.approx(plain["train/loss_epoch"], rel=1e-4)
    a, b = (load_checkpoint(tmp_path / run / "last.ckpt")["state_dict"] for run in ("plain", "compiled"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-4)


def test_sample_cli_writes_grid_array_and_record(run_dir, tmp_path):
    out = tmp_path / "s"
    cmd = [sys.executable, "sample.py", f"ckpt={run_dir / 'last.ckpt'}", "n=6", "seed=3", f"out_dir={out}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    samples = np.load(out / "generated.npz")["samples"]
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    record = json.loads((out / "record.json").read_text())
    assert record["n"] == 6 and record["seed"] == 3 and record["checkpoint"].endswith("last.ckpt")
    subprocess.run(cmd[:-1] + [f"out_dir={tmp_path / 's2'}"], cwd=ROOT, check=True, capture_output=True)
    assert np.array_equal(np.load(tmp_path / "s2" / "generated.npz")["samples"], samples)  # seeded


@pytest.mark.parametrize(
    "arg, message",
    [
        ("refill=zeros", "refill=zeros: this run's samples are not latents (ImageCodec)"),
        ("spread=1.3", "spread=1.3: this run's samples are not sequences (ImageCodec); spread widens latent sequences"),
        ("temperature=1", "temperature=1: this run's samples are not melodies (ImageCodec)"),
        ("render_n=8", "render_n=8: this run's samples are not melodies (ImageCodec)"),
    ],
)
def test_latent_options_on_an_image_run_are_clear_errors(run_dir, tmp_path, arg, message):
    cmd = [sys.executable, "sample.py", f"ckpt={run_dir / 'last.ckpt'}", "n=2", f"out_dir={tmp_path}", arg]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip() == f"error: {message}"
    assert not list(tmp_path.iterdir())  # nothing written


def test_sample_cli_missing_checkpoint_is_a_clear_error(tmp_path):
    res = subprocess.run(
        [sys.executable, "sample.py", f"ckpt={tmp_path / 'nope.ckpt'}"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 2 and "checkpoint not found" in res.stderr and "nope.ckpt" in res.stderr


def test_incompatible_checkpoint_is_a_clear_error(run_dir, tmp_path):
    ckpt = torch.load(run_dir / "last.ckpt", weights_only=False)
    ckpt["run_config"]["model"]["base_channels"] = 16
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    from ddpm.sampling import restore

    with pytest.raises(CheckpointError, match="does not match"):
        restore(load_checkpoint(bad), bad)
    torch.save({"foo": 1}, bad)
    with pytest.raises(CheckpointError, match="not written by this project"):
        load_checkpoint(bad)
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(bad)


def test_a_refused_start_leaves_no_run_folder_and_a_run_with_files_is_kept(tmp_path):
    day = tmp_path / "outputs" / "2026-11-29"
    refused, other = day / "17-10-24", day / "17-11-00"
    for run in (refused, other):
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
        (run / "train.log").write_text("")
    (other / "last.ckpt").write_bytes(b"weights")
    assert not discard_unused_run(other) and (other / "last.ckpt").read_bytes() == b"weights"
    assert discard_unused_run(refused) and not refused.exists() and day.is_dir()  # another run still there
    (other / "last.ckpt").unlink()
    assert discard_unused_run(other) and not day.exists() and (tmp_path / "outputs").is_dir()
    mine = tmp_path / "mine"  # a folder the user named holds a file of theirs: kept whole
    (mine / ".hydra").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    assert not discard_unused_run(mine) and (mine / "notes.txt").read_text() == "mine"
    assert not discard_unused_run(tmp_path / "absent")
    named = tmp_path / "my_runs" / "try1"  # hydra.run.dir the user named: its parent is theirs, empty or not
    (named / ".hydra").mkdir(parents=True)
    assert discard_unused_run(named) and not named.exists() and (tmp_path / "my_runs").is_dir()


def test_resume_continues_from_last_checkpoint(run_dir, tmp_path):
    cfg = compose_train(FAST + TINY_UNET + ["trainer.max_epochs=2", f"+ckpt_path={run_dir / 'last.ckpt'}"], tmp_path)
    train(cfg)
    assert (tmp_path / "diffusion_model_001.ckpt").is_file()
    assert not (tmp_path / "diffusion_model_000.ckpt").exists()  # epoch 0 came from the resumed run
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 1


def test_atomic_save_keeps_old_file_when_write_fails(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "x.ckpt"
    io.save_checkpoint({"a": 1}, path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        io.save_checkpoint({"a": 2}, path)
    assert torch.load(path)["a"] == 1 and os.listdir(tmp_path) == ["x.ckpt"]


def test_new_folder_never_reuses_a_folder_with_files(tmp_path):
    from ddpm.io.atomic import new_folder

    first = new_folder(tmp_path / "out" / "melody_seed0")
    assert first == tmp_path / "out" / "melody_seed0" and first.is_dir()
    assert new_folder(first) == first  # still empty: an earlier run that wrote nothing
    (first / "table.md").write_text("kept")
    second = new_folder(first)
    assert second.name == "melody_seed0-2" and second.is_dir()
    (second / "x").write_text("")
    assert new_folder(first).name == "melody_seed0-3"
    assert (first / "table.md").read_text() == "kept"


def test_hydra_cli_multirun_writes_one_folder_per_job(tmp_path):
    overrides = [o for o in FAST if not o.startswith("callbacks.samples")] + TINY_UNET
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "seed=0,1",
        "callbacks.samples=null",
        "logger=none",
        f"hydra.sweep.dir={tmp_path}",
        *overrides,
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    assert (tmp_path / "0" / "last.ckpt").is_file() and (tmp_path / "1" / "last.ckpt").is_file()


def test_ddp_two_cpu_processes(tmp_path):
    """2 gloo processes: own noise per rank, val/loss over each eval record once, one file per epoch."""
    base = [o for o in FAST if "limit_val_batches" not in o] + TINY_UNET + ["data.val_fraction=0.0501"]  # 91 eval
    probes = [
        "data._target_=tests.probes.CountingDigits",
        f"+data.counter={tmp_path / 'prepared.txt'}",
        "+callbacks.probe._target_=tests.probes.NoiseProbe",
        f"+callbacks.probe.dirpath={tmp_path / 'probe'}",
    ]
    run = tmp_path / "run"
    cmd = [sys.executable, "train.py", "trainer=ddp_cpu", "logger=none", f"hydra.run.dir={run}", *base, *probes]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "world_size: 2" in res.stderr or "MEMBER: 2/2" in res.stderr + res.stdout
    # Each rank drew its own steps and noise for its own records.
    seen = [torch.load(tmp_path / "probe" / f"noise_rank{r}.pt") for r in (0, 1)]
    assert seen[0]["noise"].shape == seen[1]["noise"].shape
    assert not torch.allclose(seen[0]["noise"], seen[1]["noise"]) and not torch.equal(seen[0]["t"], seen[1]["t"])
    assert not torch.equal(seen[0]["x_start"], seen[1]["x_start"])
    # prepare_data ran once; one model file for the epoch; samples from rank 0.
    assert (tmp_path / "prepared.txt").read_text().splitlines() == ["prepared"]
    assert sorted(p.name for p in run.glob("*.ckpt")) == ["diffusion_model_000.ckpt", "last.ckpt"]
    assert not list(run.glob(".*.tmp")) and (run / "samples" / "epoch_000.png").is_file()
    # val/loss of the 2 processes equals a 1-process evaluation of the same weights.
    ckpt = read_checkpoint(run / "last.ckpt")  # its config names a test class: not for load_checkpoint
    two = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Checkpoint"))["best_model_score"]
    cfg = compose_train(base)
    datamodule, codec = instantiate(cfg.data), instantiate(cfg.codec)
    codec.fit(datamodule)
    module = build_model(cfg, codec)
    module.load_state_dict(ckpt["state_dict"])
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    one = trainer.validate(module, datamodule=datamodule, verbose=False)[0]["val/loss"]
    assert abs(float(two) - one) < 1e-6, (float(two), one)


def test_a_bad_diffusion_config_is_refused_before_the_prepare_stage(tmp_path):
    """Mittal's betas carry beta_start / beta_end, which the cosine schedule does not take: one line, exit 2,
    and no corpus extracted, no latent folder made, no run folder left."""
    run_dir = tmp_path / "runs" / "2026-12-07" / "12-00-00"
    cmd = [
        sys.executable,
        "train.py",
        "diffusion.betas._target_=ddpm.schedules.cosine_betas",
        f"prepare.corpus.cache_dir={tmp_path / 'cache'}",
        f"prepare.out_dir={tmp_path / 'latents'}",
        f"hydra.run.dir={run_dir}",
    ]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = res.stderr.strip().splitlines()[-1]
    message = "error: diffusion (ddpm.diffusion.GaussianDiffusion): cosine_betas() got an unexpected keyword argument"
    assert res.returncode == 2 and last == f"{message} 'beta_start'" and "Traceback" not in res.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "latents").exists()
    assert not run_dir.parent.exists()
