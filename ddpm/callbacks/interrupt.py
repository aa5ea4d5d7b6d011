"""SIGTERM or Ctrl-C: finish the batch, write ``last.ckpt``, stop; ``ckpt_path=.../last.ckpt`` resumes."""

import logging
import os
import signal
import threading

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class InterruptCheckpoint(L.Callback):
    """Saves the full training state to ``dirpath/filename.ckpt`` when training is interrupted.

    Lightning turns SIGTERM (schedulers, ``kill``) into a stop at the next batch boundary, on every
    rank; Ctrl-C is sent the same way instead of interrupting mid-update. A second Ctrl-C stops at
    once, without saving.
    """

    def __init__(self, dirpath: str, filename: str = "last"):
        self.path = os.path.join(dirpath, f"{filename}.ckpt")
        self._previous_sigint = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _on_sigint(self, signum, frame) -> None:
        log.warning("Ctrl-C: stopping after this batch and saving %s (Ctrl-C again to stop at once)", self.path)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGTERM)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return  # an error: the last checkpoint written before it stays the last good one
        trainer.save_checkpoint(self.path, weights_only=False)
        if trainer.is_global_zero:
            log.warning(
                "interrupted at epoch %d, step %d: state saved to %s; resume with ckpt_path=%s",
                trainer.current_epoch,
                trainer.global_step,
                self.path,
                self.path,
            )
