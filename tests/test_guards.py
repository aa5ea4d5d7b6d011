"""The small checks every entry point leans on, each pinned by a value (from a mutation audit, session 28):
config ranges and types, checkpoint targets, atomic writes, and the inputs of infilling."""

import os
import stat
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ddpm.checkpoint_io import CheckpointError, check_targets
from ddpm.config_check import _expected, check_values
from ddpm.errors import ConfigError
from ddpm.io import atomic
from ddpm.sampling import infill_inputs, load_checkpoint, midi_melody, set_overrides


def test_ranges_hold_their_closed_ends_and_refuse_booleans():
    check_values({"temperature": 2.0, "ema_decay": 0.0, "port": 65535, "render_n": 0})  # closed ends
    check_values({"kl_threshold": 0.0, "input_perturbation": 0.0})
    check_values({"workers": 0, "trainer": {"max_epochs": -1, "devices": -1, "max_steps": -1}})  # -1: no limit, all
    for values, message in (
        ({"temperature": 2.01}, r"temperature=2.01: expected a number in \[0.0, 2.0\]"),
        ({"ema_decay": 1.0}, r"ema_decay=1.0: expected a number in \[0.0, 1.0\)"),
        ({"port": 65536}, "port=65536: expected an integer >= 0 and <= 65535"),
        ({"n": True}, "n=True: expected an integer >= 1"),
        ({"n": 0}, "n=0: expected an integer >= 1"),
        ({"kl_threshold": float("nan")}, r"kl_threshold=nan: expected a number in \[0.0, inf\)"),
        ({"prepare.kl_threshold": -0.1}, r"prepare.kl_threshold=-0.1: expected a number in \[0.0, inf\)"),
        ({"split_seed": -1}, "split_seed=-1: expected an integer >= 0"),
        ({"diffusion.input_perturbation": -1}, r"diffusion.input_perturbation=-1: expected a number in \[0.0, inf\)"),
        ({"prepare.corpus.workers": -2}, "prepare.corpus.workers=-2: expected an integer >= 0"),  # ran silently
        ({"trainer.max_epochs": -5}, "trainer.max_epochs=-5: expected an integer >= -1"),  # -1: no limit
        ({"trainer.devices": 0}, "trainer.devices=0: expected a number of devices"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_values(values)
    assert _expected("batch_size", 4, None) == "an integer"  # null may switch things off, not a size
    assert _expected("max_time", "00:00:26:00", None) is None
    assert _expected("max_epochs", 100, None) is None  # a limit switched off: train by steps


def test_a_checkpoint_config_may_not_name_a_function_anywhere(tmp_path):
    check_targets({"_target_": "ddpm.schedules.cosine_betas"}, tmp_path / "x.ckpt")  # a schedule: allowed
    for config in (
        {"_target_": "ddpm.module.step_seed"},  # a function of this project, not a class
        {"callbacks": [{"_target_": "ddpm.module.step_seed"}]},  # inside a list too
    ):
        with pytest.raises(CheckpointError, match="step_seed"):
            check_targets(config, tmp_path / "x.ckpt")


def test_a_checkpoint_without_its_run_config_is_refused(tmp_path):
    path = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"lacks \['run_config'\]"):
        load_checkpoint(path)


def test_atomic_writes_sync_before_the_rename_and_get_the_usual_mode(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: calls.append("replace") or real_replace(a, b))
    path = atomic.atomic_write_text(tmp_path / "x.txt", "hi")
    assert calls == ["fsync", "replace"] and path.read_text() == "hi"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_infill_ranges_reach_the_last_frame_and_set_the_mask(monkeypatch):
    codec = SimpleNamespace(sample_shape=(4, 3), to_model=lambda x: torch.as_tensor(np.asarray(x)[..., :3]))
    import ddpm.sampling as sampling

    latents = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    monkeypatch.setattr(sampling, "eval_latents", lambda run_config, n=None, folder=None: latents[:n])
    known, mask, originals = infill_inputs(codec, [2, 4], 2, run_config={})  # the last two frames regenerated
    assert mask[0, :, 0].tolist() == [1, 1, 0, 0] and np.array_equal(originals, latents)
    assert torch.equal(known, torch.as_tensor(latents[..., :3]))
    with pytest.raises(ConfigError, match=r"infill=\[2,5\]: expected 0 <= start < end <= 4"):
        infill_inputs(codec, [2, 5], 2, run_config={})


def test_a_midi_file_without_notes_in_range_is_one_line(tmp_path):
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(pretty_midi.Instrument(0))
    midi.instruments[0].notes.append(pretty_midi.Note(90, 10, 0.0, 0.5))  # MIDI 10: below the range 21-108
    midi.write(str(tmp_path / "low.mid"))
    with pytest.raises(ConfigError, match=r"infill_midi=.*low.mid: no notes in the MIDI range 21-108"):
        midi_melody(tmp_path / "low.mid", 128)


def test_sampling_time_overrides_are_range_checked_where_they_are_set():
    codec = SimpleNamespace(temperature=1.0, render_n=4)
    with pytest.raises(ConfigError, match=r"temperature=-0.5: expected a number in \[0.0, 2.0\]"):
        set_overrides(OmegaConf.create({"temperature": -0.5}), None, codec)
    assert codec.temperature == 1.0
