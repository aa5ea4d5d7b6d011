"""Train a diffusion model: ``python train.py model=transformer data=mvae`` (see conf/train.yaml)."""

import signal
import sys

import hydra
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from ddpm.config_check import check_overrides
from ddpm.errors import run_or_exit
from ddpm.training import discarded_if_refused, train


def train_or_discard(cfg: DictConfig) -> dict[str, float]:
    """``train(cfg)``; when bad input stops it, the run folder it left empty is removed."""
    with discarded_if_refused(cfg.paths.output_dir):
        return train(cfg)


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
