"""Callbacks, configured in ``conf/callbacks``."""

from ddpm.callbacks.calibration import SpreadCalibration
from ddpm.callbacks.checkpoint import Checkpoint
from ddpm.callbacks.extra_ema import ExtraEMA
from ddpm.callbacks.interrupt import InterruptCheckpoint
from ddpm.callbacks.loss_plot import LossPlot
from ddpm.callbacks.rng_state import RNGState
from ddpm.callbacks.run_config import RunConfig
from ddpm.callbacks.sampling import SampleCallback

__all__ = [
    "Checkpoint",
    "ExtraEMA",
    "InterruptCheckpoint",
    "LossPlot",
    "RNGState",
    "RunConfig",
    "SampleCallback",
    "SpreadCalibration",
]
