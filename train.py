"""Train a diffusion model: ``python train.py model=transformer data=mvae`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from ddpm.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get("val/loss")  # the value a Hydra sweeper would optimise


if __name__ == "__main__":
    main()
