"""The training callbacks (ddpm/callbacks/sampling.py, loss_plot.py) on stand-ins: which epochs draw samples,
what the loss plot records (pinned by session 29's mutation audit; end to end: tests/test_training.py)."""

from types import SimpleNamespace

import torch

# ----- the callbacks -----


class FakeModule:
    """What ``SampleCallback`` uses of a module: ``sample`` and a codec that records what it writes."""

    def __init__(self):
        self.written = []
        self.codec = SimpleNamespace(write=lambda x, dirpath, name: self.written.append(name))

    def sample(self, n, generator, sampler=None, progress=None):
        return torch.zeros(n, 2)


def test_samples_are_drawn_after_every_nth_epoch_and_at_the_end(tmp_path):
    from ddpm.callbacks.sampling import SampleCallback

    callback, module = SampleCallback(str(tmp_path), every_n_epochs=3, n=2), FakeModule()
    for epoch in range(7):
        callback.on_train_epoch_end(SimpleNamespace(current_epoch=epoch, loggers=[]), module)
    callback.on_fit_end(SimpleNamespace(current_epoch=6, loggers=[]), module)
    assert module.written == ["epoch_002", "epoch_005", "final"]  # after 3 and 6 epochs, then the end


def test_the_loss_plot_records_each_loss_by_epoch_and_redraws_every_epoch(tmp_path):
    from ddpm.callbacks.loss_plot import LossPlot

    plot = LossPlot(str(tmp_path / "loss.png"))
    metrics = {"train/loss_epoch": torch.tensor(0.5), "val/loss": torch.tensor(0.25), "train/loss_step": 9.0}
    trainer = SimpleNamespace(callback_metrics=metrics, current_epoch=0, max_epochs=3, global_step=10)
    plot.on_train_epoch_end(trainer, None)
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"  # after the epoch, not only at the end
    trainer.current_epoch, metrics["train/loss_epoch"] = 1, torch.tensor(0.375)
    del metrics["val/loss"]
    plot.on_train_epoch_end(trainer, None)
    assert plot.history == {"train/loss": [(0, 0.5), (1, 0.375)], "val/loss": [(0, 0.25)]}
    again = LossPlot(str(tmp_path / "resumed.png"))
    again.load_state_dict(plot.state_dict())
    assert again.history == plot.history
