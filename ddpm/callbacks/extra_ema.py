"""More exponential moving averages of the weights beside the module's own, to choose the decay after one run."""

import copy
import logging
from pathlib import Path

import lightning as L
import torch

from ddpm.checkpoint_io import atomic_save
from ddpm.module import ema_step

log = logging.getLogger(__name__)


class ExtraEMA(L.Callback):
    """Keep one EMA of the denoiser's weights per decay in ``decays``, updated after every optimizer step
    exactly as ``DiffusionModule`` updates its own (``ema_step``), and write them to ``path`` when
    training ends: ``{decay: state_dict, "step": global_step}``. Their state travels in the run's
    checkpoints, so a resumed run keeps them. ``benchmarks/ema_sweep.py`` samples one run with each.
    """

    def __init__(self, decays: list[float], path: str | Path):
        self.decays = [float(d) for d in decays]
        if not self.decays or any(not 0.0 <= d < 1.0 for d in self.decays):
            raise ValueError(f"decays must be numbers in [0, 1), got {list(decays)}")
        self.path = Path(path)
        self.copies: dict[float, torch.nn.Module] = {}
        self._restored: dict[float, dict] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for decay in self.decays:
            ema = copy.deepcopy(pl_module.denoiser).requires_grad_(False)
            if decay in self._restored:
                ema.load_state_dict(self._restored[decay])
            self.copies[decay] = ema

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        for decay, ema in self.copies.items():
            ema_step(ema, pl_module.denoiser, decay, pl_module.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            atomic_save({d: m.state_dict() for d, m in self.copies.items()} | {"step": trainer.global_step}, self.path)
            log.info("extra EMAs %s at step %d written to %s", self.decays, trainer.global_step, self.path)

    def state_dict(self) -> dict:
        return {str(d): m.state_dict() for d, m in self.copies.items()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = {float(d): weights for d, weights in state_dict.items()}
