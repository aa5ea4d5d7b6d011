"""A PNG of train and val loss per epoch, rewritten after every epoch and at the end."""

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only


class LossPlot(L.Callback):
    """Collect ``train/loss_epoch`` and ``val/loss`` each epoch and plot them to ``path``."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.history: dict[str, list[tuple[int, float]]] = {"train/loss": [], "val/loss": []}

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        for key, metric in (("train/loss", "train/loss_epoch"), ("val/loss", "val/loss")):
            if metric in metrics:
                self.history[key].append((trainer.current_epoch, float(metrics[metric])))
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.path, dpi=100)
        plt.close(fig)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = state_dict["history"]
