"""At the end of training: calibrate a sequence model's spread (``ddpm.calibration``) and rewrite ``last.ckpt``."""

import logging
import os
import time

import lightning as L
import torch

from ddpm.calibration import fit_spread, within_variance
from ddpm.checkpoint_io import atomic_save, read_checkpoint
from ddpm.samplers import Sampler

log = logging.getLogger(__name__)


def calibrate(
    module: L.LightningModule, data: torch.Tensor, n: int, seed: int, sampler: Sampler | None
) -> tuple[float, torch.Tensor]:
    """(spread, samples): ``n`` samples of ``module`` drawn as ``sample.py`` draws them (loops from the
    run's period prior, ``sampler``, ``seed``) but not widened, and the spread that gives them the
    within-sequence variance of ``data`` [N, frames, D]. Sets ``module.spread`` to 1 to draw them."""
    from ddpm.sampling import draw_loops  # ddpm.sampling builds on the training modules

    module.spread = 1.0
    loops = draw_loops(module.codec, n, seed)
    samples = module.sample(
        n,
        torch.Generator().manual_seed(seed),
        sampler=sampler,
        progress="spread calibration",
        **({"loops": loops[1], "periods": loops[0]} if loops else {}),
    )
    return fit_spread(data, samples), samples


class SpreadCalibration(L.Callback):
    """When training ends (epochs, early stopping or time limit; not when interrupted), draw ``n``
    samples as ``sample.py`` does (loops from the run's period prior, ``sampler``, ``seed``), set the
    module's ``spread`` so that their within-sequence variance matches the train split's, and add it
    to ``last.ckpt`` and to the epoch file of the same weights; earlier epoch files keep spread 1.
    Runs on sequences ``[frames, D]`` only (latent runs); image runs keep spread 1.
    """

    def __init__(self, n: int = 512, seed: int = 0, sampler: Sampler | None = None):
        if n < 2:
            raise ValueError(f"n must be at least 2 samples, got {n}")
        self.n, self.seed, self.sampler = int(n), int(seed), sampler

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        train_set = getattr(datamodule, "train_set", None)
        if len(pl_module.denoiser.sample_shape) != 2 or train_set is None:
            return
        start = time.perf_counter()
        data = train_set.tensors[0]
        spread, samples = calibrate(pl_module, data, self.n, self.seed, self.sampler)
        spread = trainer.strategy.broadcast(spread, src=0)  # every rank the same
        pl_module.spread = float(spread)
        written = self._write_all(trainer, spread) if trainer.is_global_zero else []
        trainer.strategy.barrier("spread calibration")
        if trainer.is_global_zero:
            log.info(
                "spread calibration: within-sequence variance %.3f of %d samples against %.3f of the train split: "
                "spread %.3f (%.1f s)%s",
                within_variance(samples),
                self.n,
                within_variance(data),
                spread,
                time.perf_counter() - start,
                f", written to {', '.join(written)}" if written else "; no checkpoint of these weights to write it to",
            )

    @staticmethod
    def _write_all(trainer: L.Trainer, spread: float) -> list[str]:
        """Add ``spread`` to the checkpoints of the final weights (``last.ckpt``, and the epoch file of the
        same step): only that key changes, so the training state stays exactly as Lightning saved it and
        resuming is unaffected. Files of other steps (other weights) keep spread 1."""
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None:
            return []
        paths = dict.fromkeys([checkpoint.last_model_path, *getattr(checkpoint, "best_k_models", {})])
        written = []
        for path in (p for p in paths if p and os.path.isfile(p)):
            ckpt = read_checkpoint(path)
            if ckpt.get("global_step") == trainer.global_step:
                ckpt["spread"] = spread
                atomic_save(ckpt, path)
                written.append(os.path.basename(path))
        return written
