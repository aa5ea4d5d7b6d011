"""Callbacks, configured in ``conf/callbacks``."""

from ddpm.callbacks.loss_plot import LossPlot
from ddpm.callbacks.run_config import RunConfig
from ddpm.callbacks.sampling import SampleCallback

__all__ = ["LossPlot", "RunConfig", "SampleCallback"]
