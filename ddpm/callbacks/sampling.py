"""Per-epoch sampling from a fixed seed, so successive epochs are comparable."""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class SampleCallback(L.Callback):
    """Every ``every_n_epochs`` epochs, draw ``n`` samples from ``torch.Generator(seed)``.

    Files go to ``dirpath/epoch_XXX.*`` through the DataModule's ``write_samples``; the samples
    are also logged to TensorBoard when that logger is active.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 1, n: int = 16, seed: int = 0):
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.n = n
        self.seed = seed

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = epoch + 1 >= (trainer.max_epochs or 0) or trainer.should_stop
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        generator = torch.Generator().manual_seed(self.seed)
        samples = pl_module.sample(self.n, generator)
        datamodule = trainer.datamodule
        datamodule.write_samples(samples, self.dirpath, f"epoch_{epoch:03d}")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                datamodule.log_samples(samples, logger.experiment, trainer.global_step)
