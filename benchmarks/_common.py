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


def restore_run(path: str | Path):
    """(checkpoint, module, codec) of a training checkpoint.

    The checkpoint is upgraded to today's form first (``ddpm.legacy.upgrade_checkpoint``; ``restore``
    does the same internally), so that its ``run_config`` also reads the run's data the way
    ``restore`` sees it (``ddpm.sampling.eval_latents``), for old checkpoints too.
    """
    from ddpm.legacy import upgrade_checkpoint
    from ddpm.sampling import load_checkpoint, restore

    ckpt = upgrade_checkpoint(load_checkpoint(path))
    module, codec = restore(ckpt, path)
    return ckpt, module, codec
