"""End to end on Mittal-format latents: train.py model=transformer data=mvae, then sample.py."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ddpm.io.tfrecords import write_latents
from ddpm.sampling import load_checkpoint
from ddpm.training import train
from tests.helpers import FAST, compose_train

ROOT = Path(__file__).resolve().parents[1]
TINY_TRANSFORMER = ["model.num_layers=1", "model.num_heads=2", "model.mlp_dims=32", "model.embed_channels=16"]


@pytest.fixture(scope="module")
def latents_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvae")
    rng = np.random.default_rng(0)
    for split, shards in (("train", 2), ("eval", 1)):
        for i in range(shards):
            write_latents(root / f"{split}-{i}.tfrecord", rng.normal(0, 1, (6, 32, 512)).astype(np.float32))
    with open(root / "slice.pkl", "wb") as f:
        pickle.dump(list(range(0, 512, 12))[:42], f)
    return root


@pytest.mark.parametrize("model", ["transformer", "dense"])
def test_train_and_sample_on_latents(latents_dir, tmp_path, model):
    tiny = TINY_TRANSFORMER if model == "transformer" else ["model.num_layers=1", "model.mlp_dims=32"]
    overrides = (
        FAST
        + tiny
        + [
            f"model={model}",
            "data=mvae",
            f"data.dir={latents_dir}",
            f"data.slice_dims={latents_dir / 'slice.pkl'}",
            "data.batch_size=4",
            "diffusion=ddpm",
            "diffusion.time_condition=noise_level",
        ]
    )
    train(compose_train(overrides, tmp_path))
    assert np.load(tmp_path / "samples" / "epoch_000.npz")["samples"].shape == (4, 32, 512)
    ckpt = load_checkpoint(tmp_path / "last.ckpt")
    space = ckpt["codec"]["space"]  # what sampling needs of the data, kept by the codec
    assert len(space["dims"]) == 42 and space["data_min"] < space["data_max"] and space["dim"] == 512
    assert ckpt["run_config"]["diffusion"]["clip_x_start"] is None  # resolved from the data: off

    out = tmp_path / "sampled"
    subprocess.run(
        [sys.executable, "sample.py", f"ckpt={tmp_path / 'last.ckpt'}", "n=5", f"out_dir={out}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    samples = np.load(out / "generated.npz")["samples"]
    with open(out / "generated.pkl", "rb") as f:
        assert np.array_equal(pickle.load(f), samples)
    assert samples.shape == (5, 32, 512) and np.isfinite(samples).all()


def test_mittal_experiment_composes(latents_dir, tmp_path):
    from hydra.utils import instantiate

    from ddpm.training import build_model

    cfg = compose_train(
        ["experiment=mittal_melody", f"data.dir={latents_dir}", f"data.slice_dims={latents_dir / 'slice.pkl'}"],
        tmp_path,
    )
    codec = instantiate(cfg.codec)
    codec.fit(instantiate(cfg.data))
    module = build_model(cfg, codec)
    assert module.denoiser.sample_shape == (32, 42)
    assert module.diffusion.time_condition == "noise_level" and not module.diffusion.clip_x_start
    assert module.diffusion.betas[0].item() == pytest.approx(1e-6) and module.diffusion.betas[
        -1
    ].item() == pytest.approx(0.01)
    assert len(module.denoiser.encoder.layers) == 6


def test_sample_cli_infills_the_middle_frames(latents_dir, tmp_path):
    overrides = (
        FAST
        + TINY_TRANSFORMER
        + [
            "model=transformer",
            "data=mvae",
            f"data.dir={latents_dir}",
            "data.input_shape=[32,512]",
            "data.batch_size=4",
        ]
    )
    train(compose_train(overrides, tmp_path))
    out = tmp_path / "infill"
    cmd = [sys.executable, "sample.py", f"ckpt={tmp_path / 'last.ckpt'}", "n=3", "infill=[8,24]", f"out_dir={out}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    generated = np.load(out / "generated.npz")["samples"]
    original = np.load(out / "original.npz")["samples"]
    assert generated.shape == original.shape == (3, 32, 512)
    assert np.allclose(generated[:, :8], original[:, :8], atol=1e-5)
    assert np.allclose(generated[:, 24:], original[:, 24:], atol=1e-5)
    assert not np.allclose(generated[:, 8:24], original[:, 8:24], atol=1e-2)
