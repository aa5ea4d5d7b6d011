"""Store the run's resolved config in every checkpoint, so ``sample.py`` can rebuild the model."""

import lightning as L


class RunConfig(L.Callback):
    """Writes ``config`` (a plain dict) to ``checkpoint["run_config"]``."""

    def __init__(self, config: dict):
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["run_config"] = self.config
