"""A PNG of train and val loss per epoch, rewritten after every epoch and at the end; a log line per epoch."""

import logging
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from ddpm.io.atomic import atomic_path

log = logging.getLogger(__name__)


class LossPlot(L.Callback):
    """Collect ``train/loss_epoch`` and ``val/loss`` each epoch, log them ("epoch 3/40: ...") and plot
    them to ``path``."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.history: dict[str, list[tuple[int, float]]] = {"train/loss": [], "val/loss": []}
        self._start = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        shown = []
        for key, metric in (("train/loss", "train/loss_epoch"), ("val/loss", "val/loss")):
            if metric in metrics:
                self.history[key].append((trainer.current_epoch, float(metrics[metric])))
                shown.append(f"{key} {float(metrics[metric]):.4f}")
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        elapsed = time.perf_counter() - self._start
        log.info(
            "epoch %d/%s: %s, step %d, %.0f s",
            trainer.current_epoch + 1,
            total,
            ", ".join(shown),
            trainer.global_step,
            elapsed,
        )
        self.write()

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write()

    def write(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for key, points in self.history.items():
            if points:
                epochs, values = zip(*points)
                ax.plot(epochs, values, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (eps MSE)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_path(self.path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = state_dict["history"]
