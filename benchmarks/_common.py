"""Helpers shared by the benchmark scripts: compose a training config outside Hydra's CLI, restore a run,
the arguments and the train split of the scripts that score a melody run's samples."""

import argparse
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


def sample_parser(doc: str, seed: int) -> argparse.ArgumentParser:
    """The arguments of a script that scores a run's samples: ``--ckpt``, ``--n``, ``--seed``, ``--sampler``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--sampler", default="fast", help="a conf/sampler option")
    return parser


def train_latents(run_config: dict):
    """The run's train split in model space: a float tensor [N, frames, D]."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    datamodule = instantiate(OmegaConf.create(run_config).data)
    datamodule.setup("fit")
    return datamodule.train_set.tensors[0].float()
