"""Train the 2-bar melody MusicVAE on the folk corpus: ``python train_musicvae.py`` (conf/train_musicvae.yaml)."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ddpm.config_check import check_overrides
from ddpm.errors import run_or_exit
from ddpm.training import build


@hydra.main(version_base="1.3", config_path="conf", config_name="train_musicvae")
def main(cfg: DictConfig) -> None:
    stage = run_or_exit(lambda: build(cfg.prepare, "prepare"))
    run_or_exit(lambda: stage.fit_musicvae(HydraConfig.get().runtime.output_dir))
    print(f"saved {stage.musicvae.path}")


if __name__ == "__main__":
    run_or_exit(lambda: check_overrides("train_musicvae", sys.argv[1:]))
    main()
