"""Per-epoch sampling from a fixed seed, so successive epochs are comparable."""

import logging
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from ddpm.samplers import Sampler

log = logging.getLogger(__name__)


class SampleCallback(L.Callback):
    """Every ``every_n_epochs`` epochs, draw ``n`` samples from ``torch.Generator(seed)``.

    Files go to ``dirpath/epoch_XXX.*`` through the module's codec (``ddpm.codecs``), and to
    ``dirpath/final.*`` when training ends (by epochs, early stopping or time limit); the samples
    are also logged to TensorBoard when that logger is active. ``sampler`` (``ddpm.samplers``, the
    ``sampler`` config group) defaults to ancestral sampling over all T steps. Latent runs draw
    loops from the run's period prior, as ``sample.py`` does (``ddpm.periods``).
    """

    def __init__(
        self, dirpath: str, every_n_epochs: int = 1, n: int = 16, seed: int = 0, sampler: Sampler | None = None
    ):
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.n = n
        self.seed = seed
        self.sampler = sampler

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module, f"epoch_{trainer.current_epoch:03d}")

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw(trainer, pl_module, "final")

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> None:
        from ddpm.sampling import draw_loops  # ddpm.sampling builds on the training modules

        start = time.perf_counter()
        loops = draw_loops(pl_module.codec, self.n, self.seed)
        samples = pl_module.sample(
            self.n,
            torch.Generator().manual_seed(self.seed),
            sampler=self.sampler,
            progress=f"samples {name}",
            **({"loops": loops[1], "periods": loops[0]} if loops else {}),
        )
        seconds = time.perf_counter() - start
        codec = pl_module.codec
        codec.write(samples, self.dirpath, name)
        log.info(
            "%s: %d samples in %.1f s (+%.1f s to write) -> %s",
            name,
            self.n,
            seconds,
            time.perf_counter() - start - seconds,
            self.dirpath,
        )
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                codec.log(samples, logger.experiment, trainer.global_step)
