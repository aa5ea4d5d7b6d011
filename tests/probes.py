"""Test-only callbacks and data modules, built by ``_target_`` in subprocess runs of train.py."""

from pathlib import Path

import lightning as L
import torch

from ddpm.data.images import DigitsDataModule


class NoiseProbe(L.Callback):
    """Saves the steps and noise of the first training batch of each rank to ``dirpath/noise_rank<r>.pt``."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.seen: dict | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        diffusion = pl_module.diffusion
        q_sample = diffusion.q_sample

        def spy(x_start, t, noise):
            if pl_module.training and self.seen is None:
                self.seen = {"t": t.cpu(), "noise": noise.cpu(), "x_start": x_start.cpu()}
            return q_sample(x_start, t, noise)

        diffusion.q_sample = spy

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            torch.save(self.seen, self.dirpath / f"noise_rank{trainer.global_rank}.pt")


class CountingDigits(DigitsDataModule):
    """Digits whose ``prepare_data`` appends a line to ``counter``: how often did it run?"""

    def __init__(self, counter: str, **kwargs):
        super().__init__(**kwargs)
        self.counter = Path(counter)

    def prepare_data(self) -> None:
        with open(self.counter, "a") as f:
            f.write("prepared\n")


class CachedDigits(DigitsDataModule):
    """Digits whose ``prepare_data`` builds a "cache" the first time, drawing random numbers and
    re-seeding as MusicVAE training does, and finds it the next time."""

    def __init__(self, cache: str, **kwargs):
        super().__init__(**kwargs)
        self.cache = Path(cache)

    def prepare_data(self) -> None:
        if self.cache.exists():
            return
        L.seed_everything(1234)
        torch.randn(1000)
        self.cache.write_text("built")


class NaNInjector(L.Callback):
    """Puts a NaN into batch ``batch_idx`` of epoch ``epoch``."""

    def __init__(self, epoch: int = 1, batch_idx: int = 1):
        self.epoch, self.batch_idx = epoch, batch_idx

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch_idx:
            batch.view(-1)[0] = float("nan")
