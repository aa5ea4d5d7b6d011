"""Seeds independent of cache state, the NaN guard, and loading files that must not run code."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ddpm.checkpoint_io import CheckpointError, read_checkpoint
from ddpm.module import NonFiniteLossError
from ddpm.music.musicvae import MusicVAE
from ddpm.music.vae_io import load_musicvae, save_musicvae
from ddpm.sampling import load_checkpoint, restore
from ddpm.training import train
from tests.helpers import compose_train
from tests.test_resume import TINY

ROOT = Path(__file__).resolve().parents[1]


def weights(path: Path) -> dict:
    return {k: v for k, v in read_checkpoint(path)["state_dict"].items() if k.startswith("denoiser.")}


def test_same_seed_same_model_whether_or_not_the_cache_was_built(tmp_path):
    cache = tmp_path / "cache.txt"
    data = ["data._target_=tests.probes.CachedDigits", f"+data.cache={cache}", "trainer.max_epochs=1"]
    train(compose_train(TINY + data, tmp_path / "fresh"))  # builds the cache, drawing random numbers
    assert cache.exists()
    train(compose_train(TINY + data, tmp_path / "cached"))  # finds it
    fresh, cached = weights(tmp_path / "fresh" / "last.ckpt"), weights(tmp_path / "cached" / "last.ckpt")
    assert all(torch.equal(fresh[k], cached[k]) for k in fresh)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    nan = ["+callbacks.nan._target_=tests.probes.NaNInjector", "trainer.max_epochs=3"]
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite .* epoch 1, step 4 .*last good checkpoint is .*last.ckpt"
    ):
        train(compose_train(TINY + nan, tmp_path))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["diffusion_model_000.ckpt", "last.ckpt"]
    last = read_checkpoint(tmp_path / "last.ckpt")
    assert last["epoch"] == 0 and last["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    good = weights(tmp_path / "diffusion_model_000.ckpt")
    assert all(torch.equal(good[k], last["state_dict"][k]) for k in good)
    assert not list(tmp_path.glob(".*.tmp"))


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def run_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(compose_train(TINY + ["trainer.max_epochs=1"], out))
    return out / "last.ckpt"


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, run_ckpt):
    marker, evil = tmp_path / "code_ran", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "run_config": {}, "x": Evil(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused .* would call posix.system"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="refused"):  # resume reads the same way
        train(compose_train(TINY + [f"+ckpt_path={evil}"], tmp_path / "resume"))
    res = subprocess.run([sys.executable, "sample.py", f"ckpt={evil}"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "refused" in res.stderr, res.stderr
    assert not marker.exists()
    # A config that would build something other than this project's classes is refused too.
    good = torch.load(run_ckpt, weights_only=True)
    config = OmegaConf.to_container(OmegaConf.create(good["run_config"]))
    # (Hydra blocks os.system itself; a function of this project that writes files it does not.)
    config["data"] = {"_target_": "ddpm.io.tfrecords.write_latents", "path": str(marker), "latents": [[0.0]]}
    torch.save({**good, "run_config": config}, evil)
    with pytest.raises(CheckpointError, match="_target_='ddpm.io.tfrecords.write_latents'"):
        restore(good | {"run_config": config}, evil)
    with pytest.raises(CheckpointError, match="write_latents"):
        load_checkpoint(evil)
    assert not marker.exists()
    module, _ = restore(load_checkpoint(run_ckpt), run_ckpt)  # our own file still loads
    assert torch.equal(module.state_dict()["denoiser.conv_in.weight"], good["state_dict"]["denoiser.conv_in.weight"])


def test_a_checkpoint_that_cannot_resume_is_named_before_any_work(tmp_path, run_ckpt):
    """Unreadable, exported (no training state) or of another model: one line naming ckpt_path; the first
    two before the run folder is made."""
    good = torch.load(run_ckpt, weights_only=True)
    torch.save({k: v for k, v in good.items() if k != "optimizer_states"}, tmp_path / "exported.ckpt")
    (tmp_path / "song.mid").write_bytes(b"MThd: a MIDI file")
    for name, message in (
        ("exported.ckpt", "no training state in it .not a run.s checkpoint: an exported one such as checkpoints/melo"),
        ("song.mid", r"is not a readable checkpoint to resume \(ckpt_path\)"),
    ):
        with pytest.raises(CheckpointError, match=f"{tmp_path / name}.*{message}") as caught:
            train(compose_train(TINY + [f"+ckpt_path={tmp_path / name}"], tmp_path / name.split(".")[0]))
        assert not (tmp_path / name.split(".")[0]).exists()
        assert "weights_only" not in str(caught.value)  # torch's advice to load it unsafely is not passed on
    other = TINY + ["model.base_channels=16", f"+ckpt_path={run_ckpt}", "logger=tensorboard"]
    with pytest.raises(CheckpointError, match=f"ckpt_path={run_ckpt}: the checkpoint's weights do not fit this model"):
        train(compose_train(other, tmp_path / "other"))
    assert not (tmp_path / "other" / "tensorboard").exists()  # refused before the logger wrote: the folder goes


def test_musicvae_file_is_loaded_safely(tmp_path):
    marker, path = tmp_path / "code_ran", tmp_path / "vae.pt"
    cfg = {"_target_": "ddpm.music.musicvae.MusicVAE", "z_dim": 4, "encoder_hidden": 4, "decoder_hidden": 4}
    model = MusicVAE(z_dim=4, encoder_hidden=4, decoder_hidden=4)
    save_musicvae(model, cfg, path)
    assert torch.equal(load_musicvae(path).to_mu.weight, model.to_mu.weight)  # round trip
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    torch.save({"config": cfg, "state_dict": {}, "x": Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_musicvae(path)
    writer = {"_target_": "ddpm.io.tfrecords.write_latents", "path": str(marker), "latents": [[0.0]]}
    torch.save({"config": writer, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="write_latents"):
        load_musicvae(path)
    assert not marker.exists()


def test_a_musicvae_path_that_is_a_folder_is_refused_before_training_and_leaves_no_run(tmp_path):
    """Not after the training, at the save (the model lost); the refused run's folder is removed."""
    folder, run = tmp_path / "vae", tmp_path / "run"
    folder.mkdir()
    res = subprocess.run(
        [sys.executable, "train_musicvae.py", f"prepare.musicvae.path={folder}", f"hydra.run.dir={run}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    expected = f"error: prepare.musicvae.path={folder}: a folder; expected the MusicVAE file to read or write"
    assert res.stderr.strip() == expected and not run.exists()


def test_training_warns_when_a_schedule_with_no_signal_left_is_not_clipped(tmp_path, caplog):
    """The cosine schedule ends at alpha_bar_T ~ 1e-9 (its last beta clipped to 0.999): unclipped, its samples
    blow up (README, "Clipping"). Ho's (4.0e-5) and Mittal's (6.6e-3) schedules, or a clip, need no warning."""
    from ddpm.diffusion import GaussianDiffusion
    from ddpm.schedules import cosine_betas, linear_betas, mittal_betas
    from ddpm.training import warn_if_unclipped

    cosine = ["diffusion.betas._target_=ddpm.schedules.cosine_betas", "diffusion.betas.timesteps=1000"]
    cosine += ["trainer.max_epochs=1"]  # at T = 10 the cosine schedule ends at 2.5e-5
    with caplog.at_level("WARNING", logger="ddpm.training"):
        train(compose_train([*TINY, *cosine, "diffusion.clip_x_start=false"], tmp_path / "unclipped"))
    assert "diffusion.clip_x_start is off: unclipped x_0 estimates" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="ddpm.training"):
        warn_if_unclipped(GaussianDiffusion(cosine_betas(1000), clip_x_start=True))
        warn_if_unclipped(GaussianDiffusion(linear_betas(1000)))
        warn_if_unclipped(GaussianDiffusion(mittal_betas(1000)))
    assert caplog.text == ""
    with caplog.at_level("WARNING", logger="ddpm.training"):
        warn_if_unclipped(GaussianDiffusion(cosine_betas(1000)))
    assert "alpha_bar_T = 2.4e-09" in caplog.text
