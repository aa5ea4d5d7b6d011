"""Exact resume, mid-epoch checkpoints, SIGTERM and SIGKILL: a crash costs nothing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddpm.checkpoint_io import read_checkpoint
from ddpm.training import train
from tests.helpers import compose_train

ROOT = Path(__file__).resolve().parents[1]
# A tiny digits UNet with a shuffled train loader (the global RNG matters) and no sample drawing.
TINY = [
    "experiment=digits",
    "model.base_channels=8",
    "model.channel_mults=[1,2]",
    "diffusion.betas.timesteps=10",
    "data.batch_size=16",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "callbacks.samples=null",
    "logger=none",
]


def equal(a, b) -> bool:
    """Bit-for-bit equality of nested checkpoint content."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


def callback_state(ckpt: dict, name: str) -> dict:
    return next(v for k, v in ckpt["callbacks"].items() if k.startswith(name))


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    train(compose_train(TINY + ["trainer.max_epochs=2"], tmp_path / "straight"))
    train(compose_train(TINY + ["trainer.max_epochs=1"], tmp_path / "first"))
    resume = f"+ckpt_path={tmp_path / 'first' / 'last.ckpt'}"
    train(compose_train(TINY + ["trainer.max_epochs=2", resume], tmp_path / "resumed"))
    a = read_checkpoint(tmp_path / "straight" / "last.ckpt")
    b = read_checkpoint(tmp_path / "resumed" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 6 and a["epoch"] == b["epoch"] == 1
    weights = [k for k in a["state_dict"] if k.startswith("denoiser.")]
    assert weights and all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in weights)
    ema = [k for k in a["state_dict"] if k.startswith("ema.")]
    assert ema and all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in ema)
    assert equal(a["optimizer_states"], b["optimizer_states"])
    history = callback_state(a, "LossPlot")["history"]
    assert len(history["train/loss"]) == len(history["val/loss"]) == 2
    assert equal(history, callback_state(b, "LossPlot")["history"])
    assert equal(callback_state(a, "EarlyStopping"), callback_state(b, "EarlyStopping"))
    assert equal(a["callbacks"]["RNGState"], b["callbacks"]["RNGState"])
    # The run that stopped after one epoch differs from both: the comparison can fail.
    first = read_checkpoint(tmp_path / "first" / "last.ckpt")
    assert not torch.equal(first["state_dict"][weights[0]], a["state_dict"][weights[0]])


def test_mid_epoch_checkpoint_every_n_train_steps(tmp_path):
    cfg = compose_train(TINY + ["trainer.max_epochs=1", "callbacks.checkpoint.every_n_train_steps=1"], tmp_path)
    saved = []
    original = torch.save

    def spy(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "global_step" in obj:
            saved.append(obj["global_step"])
        return original(obj, f, *args, **kwargs)

    torch.save = spy
    try:
        train(cfg)
    finally:
        torch.save = original
    # steps 1 and 2 mid-epoch (last.ckpt), then the epoch file and last.ckpt after step 3
    assert saved == [1, 2, 3, 3]
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["diffusion_model_000.ckpt", "last.ckpt"]


def test_default_keeps_the_best_three_epochs_and_last(tmp_path):
    train(compose_train(TINY + ["trainer.max_epochs=5", "trainer.limit_train_batches=1"], tmp_path))
    files = sorted(p.name for p in tmp_path.glob("*.ckpt"))
    assert len(files) == 4 and "last.ckpt" in files
    state = callback_state(read_checkpoint(tmp_path / "last.ckpt"), "Checkpoint")
    kept = {Path(p).name: float(v) for p, v in state["best_k_models"].items()}
    assert set(kept) == set(files) - {"last.ckpt"}
    assert max(kept.values()) <= float(state["kth_value"]) + 1e-12  # the three lowest val/loss


def _run_train(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", *TINY, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for_step(run: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    """Wait until ``last.ckpt`` exists; return its global step."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (run / "last.ckpt").exists():
            return read_checkpoint(run / "last.ckpt")["global_step"]
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.02)
    raise TimeoutError("no last.ckpt")


def _check_run_folder(run: Path) -> None:
    """Every checkpoint loads and no temporary file is left."""
    for path in run.glob("*.ckpt"):
        assert "state_dict" in read_checkpoint(path), path
    assert not list(run.glob(".*.tmp")) and not list(run.glob("*.tmp"))


LONG = ["trainer.max_epochs=3", "trainer.limit_train_batches=8", "callbacks.checkpoint.every_n_train_steps=2"]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_to_the_end(tmp_path):
    run = tmp_path / "run"
    proc = _run_train([*LONG, f"hydra.run.dir={run}"])
    step = _wait_for_step(run, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and step < 24
    for stale in run.glob("last.ckpt"):  # simulate a kill during a save: the temporary is cleaned up
        (run / ".last.ckpt.abc.tmp").write_bytes(stale.read_bytes()[:100])
    resumed = _run_train([*LONG, f"hydra.run.dir={run}", f"+ckpt_path={run / 'last.ckpt'}"])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    final = read_checkpoint(run / "last.ckpt")
    assert final["epoch"] == 2 and final["global_step"] == 24
    _check_run_folder(run)


@pytest.mark.slow
def test_sigterm_saves_last_checkpoint_and_exits_143(tmp_path):
    run = tmp_path / "run"
    proc = _run_train([*LONG, "trainer.max_epochs=50", f"hydra.run.dir={run}"])
    step = _wait_for_step(run, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "interrupted at epoch" in out + err and "ckpt_path=" in out + err
    saved = read_checkpoint(run / "last.ckpt")
    assert saved["global_step"] >= step and saved["epoch"] < 49
    _check_run_folder(run)


def test_a_run_the_time_limit_ends_says_how_to_train_on(tmp_path, caplog):
    """``trainer.max_time`` ending a run before its epochs: one warning with the command that trains on. Its
    claim holds: a resume under the same limit trains no further, one with ``trainer.max_time=null`` does."""
    limited = TINY + ["trainer.max_epochs=1000", "+trainer.max_time=00:00:00:01", "callbacks.early_stopping=null"]
    with caplog.at_level("WARNING", logger="ddpm.training"):
        train(compose_train(limited, tmp_path / "first"))
    last = tmp_path / "first" / "last.ckpt"
    warned = [r.getMessage() for r in caplog.records if "trainer.max_time" in r.getMessage()]
    step, epoch = read_checkpoint(last)["global_step"], read_checkpoint(last)["epoch"] + 1  # the file counts from 0
    assert 0 < epoch < 1000 and epoch == -(-step // 3) and len(warned) == 1  # 3 batches an epoch
    assert f"in epoch {epoch} of trainer.max_epochs=1000 (step {step})" in warned[0]
    assert f"ckpt_path={last} trainer.max_time=null" in warned[0]

    caplog.clear()
    with caplog.at_level("WARNING", logger="ddpm.training"):  # the same limit: stops at once, and says so again
        train(compose_train([*limited, f"ckpt_path={last}"], tmp_path / "again"))
    again = tmp_path / "again" / "last.ckpt"  # nothing trained, so nothing saved
    assert not again.exists() or read_checkpoint(again)["global_step"] == step
    assert any(f"in epoch {epoch} of trainer.max_epochs=1000 (step {step})" in r.getMessage() for r in caplog.records)

    caplog.clear()
    with caplog.at_level("WARNING", logger="ddpm.training"):  # as advised: on to its epochs (one more), no warning
        on = [*limited, f"ckpt_path={last}", "trainer.max_time=null", f"trainer.max_epochs={epoch + 1}"]
        train(compose_train(on, tmp_path / "on"))
    resumed = read_checkpoint(tmp_path / "on" / "last.ckpt")
    assert resumed["epoch"] == epoch and resumed["global_step"] == step + 3  # the cut epoch counts as done
    assert not any("trainer.max_time" in r.getMessage() for r in caplog.records)


def test_the_time_limit_warning_blames_only_the_time_limit(caplog):
    """No warning when early stopping, ``max_steps`` or ``max_epochs`` ended the run, or time was left."""
    from datetime import timedelta
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import EarlyStopping, Timer
    from omegaconf import OmegaConf

    from ddpm.training import warn_if_time_limited

    def warned(timer_left=-1.0, stopped_epoch=0, max_steps=-1, epoch=3, timer=True) -> bool:
        clock = Timer(duration=timedelta(seconds=1))
        clock._offset = 1 - timer_left  # time spent before this run, as a resumed checkpoint restores it
        early = EarlyStopping(monitor="val/loss")
        early.stopped_epoch = stopped_epoch
        trainer = SimpleNamespace(
            callbacks=[clock, early] if timer else [early],
            num_training_batches=3,
            is_global_zero=True,
            max_steps=max_steps,
            global_step=7,
            current_epoch=epoch,
            max_epochs=5,
            checkpoint_callback=None,
        )
        caplog.clear()
        with caplog.at_level("WARNING", logger="ddpm.training"):
            warn_if_time_limited(trainer, OmegaConf.create({"trainer": {"max_time": "1s"}, "ckpt_path": "run/x.ckpt"}))
        return any("ckpt_path=run/x.ckpt" in r.getMessage() for r in caplog.records)

    assert warned()  # the limit, and nothing else
    assert not warned(timer_left=0.5)
    assert not warned(stopped_epoch=2)
    assert not warned(max_steps=7)
    assert not warned(epoch=5)
    assert not warned(timer=False)
    assert not any("trainer.max_time" in r.getMessage() for r in caplog.records)
