"""The MusicVAE of a melody chain (the ``musicvae`` config group): loaded from its file, or trained on
the corpus windows with a Lightning Trainer and saved there."""

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ddpm.errors import ConfigError
from ddpm.music.musicvae import MusicVAE
from ddpm.music.vae_io import load_musicvae, save_musicvae

log = logging.getLogger(__name__)


class MusicVAETraining:
    """Args:
    path: the MusicVAE file: reused when present, written when trained.
    model: partial ``MusicVAE`` (``_partial_: true``; its arguments are saved with the weights).
    module: partial ``MusicVAEModule`` (called with the model); trainer: partial ``lightning.Trainer``.
    batch_size: windows per step; seed: of initialization and data order.
    init: a MusicVAE file whose weights training starts from.
    """

    def __init__(
        self,
        path: str,
        model: Callable[..., MusicVAE],
        module: Callable[..., L.LightningModule],
        trainer: Callable[..., L.Trainer],
        batch_size: int = 128,
        seed: int = 0,
        init: str | None = None,
    ):
        self.path = Path(path)
        if self.path.is_dir():  # refused before hours of training, not at the save
            raise ConfigError(f"prepare.musicvae.path={path}: a folder; expected the MusicVAE file to read or write")
        self.model, self.module, self.trainer = model, module, trainer
        self.batch_size, self.seed, self.init = int(batch_size), int(seed), init

    def model_config(self) -> dict:
        """The ``_target_`` node that rebuilds the model (stored in the file)."""
        partial = self.model if isinstance(self.model, functools.partial) else functools.partial(self.model)
        return {"_target_": f"{partial.func.__module__}.{partial.func.__qualname__}", **partial.keywords}

    def load_or_train(self, train_windows: np.ndarray, eval_windows: np.ndarray, log_dir: str | Path | None = None):
        """The model at ``path``, trained first (and saved there) when the file is missing."""
        if self.path.is_file():
            return load_musicvae(self.path)
        log.info("training MusicVAE -> %s", self.path)
        return self.train(train_windows, eval_windows, log_dir)

    def train(self, train_windows: np.ndarray, eval_windows: np.ndarray, log_dir: str | Path | None = None):
        """Fit on event windows ``[N, 32]`` (train) with ``eval_windows`` for validation; save to ``path``."""
        L.seed_everything(self.seed, workers=True)
        model = self.model()
        if self.init:  # continue from an earlier checkpoint's weights
            model.load_state_dict(load_musicvae(self.init).state_dict())
        module = self.module(model=model)
        train_loader = DataLoader(torch.from_numpy(train_windows), self.batch_size, shuffle=True, drop_last=True)
        eval_loader = DataLoader(torch.from_numpy(eval_windows), 512)
        logger = L.pytorch.loggers.TensorBoardLogger(str(log_dir), name="musicvae", version="") if log_dir else False
        trainer = self.trainer(logger=logger)
        trainer.fit(module, train_loader, eval_loader)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        save_musicvae(model, self.model_config(), self.path, metrics)
        return model.eval()
