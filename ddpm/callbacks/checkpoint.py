"""Model files: the best few by ``val/loss`` and ``last.ckpt``, refreshed every N steps if asked."""

import os

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class Checkpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (epoch files, ``save_top_k``, ``save_last``), plus ``last.ckpt``
    rewritten every ``every_n_train_steps`` optimizer steps within an epoch (``None``: off).

    Lightning cannot combine ``every_n_epochs`` with ``every_n_train_steps``; this keeps the epoch
    files as they are and adds only the mid-epoch ``last.ckpt``, so a crash loses at most N steps.
    """

    def __init__(self, *args, every_n_train_steps: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError(
                f"every_n_train_steps must be a positive number of steps or null, got {every_n_train_steps}"
            )
        self.every_n_steps = every_n_train_steps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath and os.path.isdir(self.dirpath):
            for name in os.listdir(self.dirpath):  # temporaries of a save that was killed (atomic_save)
                if name.startswith(".") and name.endswith(".tmp") and self.FILE_EXTENSION in name:
                    os.remove(os.path.join(self.dirpath, name))

    @property
    def last_path(self) -> str:
        return os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step = trainer.global_step
        if not self.every_n_steps or step == 0 or step % self.every_n_steps or trainer.sanity_checking:
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch-end checkpoint follows
        trainer.save_checkpoint(self.last_path, weights_only=False)
        self.last_model_path = self.last_path
