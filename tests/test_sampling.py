"""sample.py's inputs, seeds and outputs (ddpm/sampling.py), on an untrained latent checkpoint built by hand
(pinned by session 29's mutation audit; the trained chain end to end: tests/test_codecs.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.music.events import MIN_PITCH
from tests.helpers import SCALE, compose_config, write_tracks


def make_latent_ckpt(root, *overrides: str):
    """(checkpoint path, eval split) of an untrained tiny TransformerDDPM on [8, 6] latents, 3 dims kept."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from ddpm.io.tfrecords import write_latents
    from ddpm.training import build_model
    from tests.helpers import TINY_TRANSFORMER, compose_train

    rng = np.random.default_rng(0)
    evals = rng.normal(size=(4, 8, 6)).astype(np.float32)
    write_latents(root / "train-0.tfrecord", rng.normal(size=(12, 8, 6)).astype(np.float32))
    write_latents(root / "eval-0.tfrecord", evals)
    base = ["data=mvae", "model=transformer", f"data.dir={root}", "data.input_shape=[8,6]"]
    base += ["data.slice_dims=[0,2,4]", "diffusion.betas.timesteps=10", *TINY_TRANSFORMER]
    cfg = compose_train([*base, *overrides], root / "run")
    codec = instantiate(cfg.codec)
    codec.fit(instantiate(cfg.data))
    module = build_model(cfg, codec)
    ckpt = {"epoch": 0, "global_step": 0, "state_dict": module.state_dict(), "codec": codec.state_dict()}
    ckpt |= {"run_config": OmegaConf.to_container(cfg, resolve=True), "spread": 1.7}
    (root / "run").mkdir()
    torch.save(ckpt, root / "run" / "last.ckpt")
    return root / "run" / "last.ckpt", evals


@pytest.fixture(scope="module")
def latent_ckpt(tmp_path_factory):
    return make_latent_ckpt(tmp_path_factory.mktemp("latent_ckpt"))


def _sample(ckpt, *overrides):
    from ddpm.sampling import sample

    files = sample(compose_config("sample", [f"ckpt={ckpt}", "n=2", "sampler=ddim", "sampler.steps=3", *overrides]))
    return np.load(files["npz"])["samples"], files


KEPT, DROPPED = [0, 2, 4], [1, 3, 5]


def test_sample_py_seeds_its_draws_and_names_its_default_folder_by_them(latent_ckpt):
    import json

    ckpt, _ = latent_ckpt
    a, files = _sample(ckpt, "seed=3")
    assert files["npz"].parent == ckpt.parent / "samples" / "last_seed3"
    again, files2 = _sample(ckpt, "seed=3")
    assert files2["npz"].parent.name == "last_seed3-2" and np.array_equal(again, a)  # a new folder, the same draws
    b, _ = _sample(ckpt, f"out_dir={ckpt.parent / 'four'}", "seed=4")
    assert not np.allclose(a[..., KEPT], b[..., KEPT], atol=1e-3)  # the noise follows the seed, not only the refill
    assert json.loads(files["record"].read_text())["spread"] == 1.7


def test_infilling_keeps_the_first_eval_sequences_and_refills_from_the_seed(latent_ckpt):
    import json

    ckpt, evals = latent_ckpt
    runs = {}
    for seed in (3, 4):
        out = ckpt.parent / f"infill{seed}"
        runs[seed], files = _sample(ckpt, "infill=[2,5]", f"seed={seed}", f"out_dir={out}")
        original = np.load(files["original_npz"])["samples"]
        assert np.array_equal(original, evals[:2])  # the first n eval sequences, every dim
        assert np.allclose(runs[seed][:, [0, 1, 5, 6, 7]], evals[:2, [0, 1, 5, 6, 7]])
        assert json.loads(files["record"].read_text())["spread"] == 1.0  # infilling is not widened
    regenerated = [runs[s][:, 2:5][..., DROPPED] for s in (3, 4)]
    assert not np.allclose(*regenerated, atol=1e-3)  # dropped dims of regenerated frames: drawn with the seed


def test_sample_args_and_infill_ranges_are_checked(tmp_path):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from ddpm.errors import ConfigError
    from ddpm.sampling import check_sample_args, infill_inputs

    base = {"ckpt": "run/last.ckpt", "n": 2, "batch_size": 2, "seed": 0, "device": "cpu"}
    check_sample_args(OmegaConf.create({**base, "infill": [0, 2]}))
    with pytest.raises(ConfigError, match=r"infill=\[1, 2, 3\]: expected \[start,end\]"):
        check_sample_args(OmegaConf.create({**base, "infill": [1, 2, 3]}))
    with pytest.raises(ConfigError, match=r"ckpt=None: expected a checkpoint file"):
        check_sample_args(OmegaConf.create({**base, "ckpt": None}))
    with pytest.raises(ConfigError, match=r"ckpt=: expected a checkpoint file"):
        check_sample_args(OmegaConf.create({**base, "ckpt": ""}))  # `ckpt=` on the command line
    (tmp_path / "notes.txt").write_text("a user's file")
    with pytest.raises(ConfigError, match=r"out_dir=.*notes.txt: a file is there; expected a folder"):
        check_sample_args(OmegaConf.create({**base, "out_dir": str(tmp_path / "notes.txt")}))
    check_sample_args(OmegaConf.create({**base, "out_dir": str(tmp_path)}))  # a folder: written into
    codec = SimpleNamespace(sample_shape=(4, 3))
    with pytest.raises(ConfigError, match=r"infill=\[2,2\]: expected 0 <= start < end <= 4"):
        infill_inputs(codec, [2, 2], 1, run_config={})  # an empty range regenerates nothing


def test_loops_are_drawn_from_their_own_stream_of_the_seed():
    """The period draw has a seed of its own (``step_seed(seed, 1)``): not the noise generator's stream."""
    from types import SimpleNamespace

    from ddpm.module import step_seed
    from ddpm.periods import PeriodPrior
    from ddpm.sampling import draw_loops

    prior = PeriodPrior([0.25, 0.25, 0.25, 0.25])
    periods, index = draw_loops(SimpleNamespace(periods=prior), 16, seed=5)
    assert torch.equal(periods, prior.draw(16, torch.Generator().manual_seed(step_seed(5, 1))))
    assert not torch.equal(periods, prior.draw(16, torch.Generator().manual_seed(5)))
    assert index.shape == (16, 4)


def test_an_infill_melody_starts_at_the_bar_of_its_first_note(tmp_path):
    from ddpm.sampling import midi_melody

    # From step 4 of bar 2, which is inside the first 2-bar window: the bar is cut, the window is not.
    notes = [(p, 20 + 4 * i, 20 + 4 * i + 4) for i, p in enumerate(SCALE)]
    write_tracks(tmp_path / "late.mid", [notes])
    events = midi_melody(tmp_path / "late.mid", 64)
    assert np.flatnonzero(events >= 2)[:3].tolist() == [4, 8, 12]  # one bar of silence cut, not bar 2's start
    assert events[4] == 60 - MIN_PITCH + 2


@pytest.mark.parametrize("normalize, box", [("minmax", None), ("none", None), ("none", 0.5)])
def test_clip_x_start_keeps_samples_in_the_box_of_the_train_split_and_is_recorded(normalize, box, tmp_path):
    """The box in model space: [-1, 1] for Mittal's `minmax`, [-max |x|, max |x|] of the train split (3.9) for
    `none`, [-0.5, 0.5] when `+diffusion.clip_value=0.5` says so. The untrained network's samples (T = 10) leave
    the first and the last box, so there the clip binds; the second box holds them anyway."""
    import json

    from ddpm.errors import ConfigError
    from ddpm.io.tfrecords import read_latents

    overrides = [f"data.normalize={normalize}"] + ([f"+diffusion.clip_value={box}"] if box else [])
    ckpt, _ = make_latent_ckpt(tmp_path, *overrides)
    train = read_latents(tmp_path / "train-0.tfrecord")[..., KEPT]
    lo, hi = float(train.min()), float(train.max())
    bound = {"minmax": 1.0, "none": max(-lo, hi)}[normalize] if box is None else box
    runs = {}
    for clip in ("true", "false"):
        out = ckpt.parent / f"clip_{clip}"
        runs[clip], files = _sample(ckpt, "spread=1", "sampler.steps=10", f"clip_x_start={clip}", f"out_dir={out}")
        recorded = json.loads(files["record"].read_text())["clip_x_start"]
        assert recorded == (pytest.approx(bound) if clip == "true" else None)
    kept = {k: v[..., KEPT] for k, v in runs.items()}
    lo, hi = (lo, hi) if normalize == "minmax" else (-bound, bound)  # minmax: [-1, 1] is the train's [min, max]
    assert lo - 1e-4 <= kept["true"].min() and kept["true"].max() <= hi + 1e-4
    binds = kept["false"].min() < lo - 0.2 * (hi - lo) or kept["false"].max() > hi + 0.2 * (hi - lo)
    assert bool(binds) == (bound != max(-float(train.min()), float(train.max())))
    with pytest.raises(ConfigError, match="clip_x_start='yes': expected true or false"):
        _sample(ckpt, "clip_x_start=yes")


def test_more_samples_than_the_memory_holds_are_refused_before_sampling(latent_ckpt, tmp_path):
    """Found by a probe: n=10**12 ended in an allocation traceback; now one line, nothing written."""
    from types import SimpleNamespace

    from ddpm.errors import ConfigError
    from ddpm.sampling import check_memory

    ckpt, _ = latent_ckpt
    with pytest.raises(ConfigError, match=r"n=1000000000000: 1000000000000 samples need about [\d,]+ GiB, more than"):
        _sample(ckpt, "n=1000000000000", f"out_dir={tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()
    codec = SimpleNamespace(sample_shape=(16, 54))  # the main job's: 43,776 bytes a sample by the estimate
    check_memory(10_000, codec)
    with pytest.raises(ConfigError, match="n=1000000000: 1000000000 samples need about 40,770 GiB"):
        check_memory(1_000_000_000, codec)


def test_a_folder_that_cannot_be_written_is_refused_before_sampling(tmp_path, monkeypatch):
    """A read-only ``out_dir`` ended in a PermissionError traceback after the sampling (found by a probe run
    without root's override; root writes anywhere, so the permission is stubbed here)."""
    import os

    from omegaconf import OmegaConf

    from ddpm.errors import ConfigError
    from ddpm.sampling import check_sample_args, unwritable

    (tmp_path / "a_file").write_text("notes")
    assert unwritable(tmp_path / "new" / "deeper") is None  # made when written
    assert unwritable(tmp_path / "a_file" / "out") == tmp_path / "a_file"  # under a file: never
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    assert unwritable(locked / "samples") == locked and unwritable(tmp_path / "open") is None
    base = {"ckpt": str(locked / "last.ckpt"), "n": 2, "batch_size": 2, "seed": 0, "device": "cpu"}
    with pytest.raises(ConfigError, match=r"out_dir=.*locked/s: cannot write in .*locked; expected a folder"):
        check_sample_args(OmegaConf.create({**base, "out_dir": str(locked / "s")}))
    with pytest.raises(ConfigError, match=r"ckpt=.*last.ckpt \(the files go beside it by default\): cannot write in"):
        check_sample_args(OmegaConf.create(base))  # no out_dir: a new folder beside the checkpoint
    check_sample_args(OmegaConf.create({**base, "out_dir": str(tmp_path / "open")}))
    (locked / "samples").mkdir()  # the default folder there already, and writable: fine
    check_sample_args(OmegaConf.create(base))
    from ddpm.sampling import check_paths

    with pytest.raises(ConfigError, match="out_dir=None: expected a folder for the files"):
        check_paths(OmegaConf.create({"ckpt": "x.ckpt", "out_dir": None}))  # serve.py: no default folder
