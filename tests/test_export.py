"""``ddpm.export``: a training checkpoint made into a sampling-only file that samples identically."""

import pytest
import torch


def test_export_keeps_sampling_identical_and_drops_training_state(melody_run, tmp_path):
    from ddpm.export import export_checkpoint
    from ddpm.sampling import load_checkpoint, restore

    _, run = melody_run
    summary = export_checkpoint(run / "last.ckpt", tmp_path / "melody.ckpt")
    exported = torch.load(tmp_path / "melody.ckpt", weights_only=True)
    assert "optimizer_states" not in exported and "loops" not in exported
    assert not any(k.startswith("ema.") for k in exported["state_dict"])
    assert summary["size_bytes"] < 0.4 * summary["source_bytes"]
    source, _ = restore(load_checkpoint(run / "last.ckpt"), "src")
    module, codec = restore(load_checkpoint(tmp_path / "melody.ckpt"), "dst")
    assert module.ema is None and codec.state_dict() == restore(load_checkpoint(run / "last.ckpt"))[1].state_dict()
    assert module.spread == source.spread != 1  # the run's calibration travels with it
    draw = lambda m: m.sample(2, torch.Generator().manual_seed(0))  # noqa: E731
    assert torch.equal(draw(source), draw(module))


def test_export_cli_errors_are_one_line(tmp_path, capsys):
    from ddpm.export import main

    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "missing.ckpt"), str(tmp_path / "out.ckpt")])
    assert e.value.code == 2 and "missing.ckpt" in capsys.readouterr().err


def test_export_refuses_a_folder_as_its_output_and_a_musicvae_that_is_not_one(melody_run, tmp_path, capsys):
    from ddpm.export import main

    _, run = melody_run
    (tmp_path / "song.mid").write_bytes(b"MThd: a MIDI file, not a MusicVAE")
    for args, message in (
        ([str(tmp_path)], f"error: {tmp_path}: a folder; expected the file to write the exported checkpoint to"),
        ([str(tmp_path / "x.ckpt"), "--musicvae", str(tmp_path / "song.mid")], "song.mid is not a readable MusicVAE"),
        ([str(run / "." / "last.ckpt")], "last.ckpt: the checkpoint being exported; expected another file"),
    ):
        with pytest.raises(SystemExit) as e:
            main([str(run / "last.ckpt"), *args])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "x.ckpt").exists()  # nothing written
    assert "optimizer_states" in torch.load(run / "last.ckpt", weights_only=True)  # the source is still the run's


def test_export_of_a_main_job_sized_model_fits_20_mb(tmp_path):
    """The default config's TransformerDDPM on 16 x 54 latents (the main job's): EMA weights only."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from ddpm.export import export_checkpoint
    from ddpm.latent_space import LatentSpace
    from ddpm.training import build_model
    from tests.helpers import compose_train

    cfg = compose_train([], tmp_path)
    codec = instantiate(cfg.codec)
    codec.space = LatentSpace(dim=512, seq_len=16, dims=list(range(54)), data_min=-4.0, data_max=4.0)
    module = build_model(cfg, codec)
    state = module.state_dict()
    ckpt = {
        "epoch": 39,
        "global_step": 4800,
        "state_dict": state,
        "codec": codec.state_dict(),
        "run_config": OmegaConf.to_container(cfg, resolve=True),
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    summary = export_checkpoint(tmp_path / "last.ckpt", tmp_path / "melody.ckpt")
    assert summary["size_bytes"] <= 20 * 1024 * 1024 and summary["parameters"] > 3e6
