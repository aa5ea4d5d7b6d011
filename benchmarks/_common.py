"""Helpers shared by the benchmark scripts: compose a training config outside Hydra's CLI."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def make_config(overrides: list[str], output_dir: str | Path) -> DictConfig:
    """The ``train`` config with ``overrides`` and its run folder set to ``output_dir``."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=overrides)
    cfg.paths.output_dir = str(output_dir)
    return cfg
