"""Train a diffusion model: ``python train.py model=transformer data=mvae`` (see conf/train.yaml)."""

import signal
import sys

import hydra
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from ddpm.config_check import check_overrides
from ddpm.errors import UserError, run_or_exit
from ddpm.training import discard_unused_run, train


def train_or_discard(cfg: DictConfig) -> dict[str, float]:
    """``train(cfg)``; when bad input stops it, the run folder it left empty is removed."""
    try:
        return train(cfg)
    except UserError:
        discard_unused_run(cfg.paths.output_dir)
        raise


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = run_or_exit(lambda: train_or_discard(cfg))
    except SIGTERMException:  # SIGTERM or Ctrl-C: last.ckpt holds the state (see InterruptCheckpoint)
        sys.exit(128 + signal.SIGTERM)
    return metrics.get("val/loss")  # the value a Hydra sweeper would optimise


if __name__ == "__main__":
    run_or_exit(lambda: check_overrides("train", sys.argv[1:]))
    main()
