"""Train the 2-bar melody MusicVAE on the folk corpus: ``python train_musicvae.py`` (conf/train_musicvae.yaml)."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ddpm.config_check import check_overrides
from ddpm.errors import run_or_exit
from ddpm.training import build, discarded_if_refused


def fit(cfg: DictConfig, output_dir: str):
    """Train and save the MusicVAE; when bad input stops it, the run folder it left empty is removed."""
    with discarded_if_refused(output_dir, "train_musicvae.log"):
        stage = build(cfg.prepare, "prepare")
        stage.fit_musicvae(output_dir)
    return stage


@hydra.main(version_base="1.3", config_path="conf", config_name="train_musicvae")
def main(cfg: DictConfig) -> None:
    stage = run_or_exit(lambda: fit(cfg, HydraConfig.get().runtime.output_dir))
    print(f"saved {stage.musicvae.path}")


if __name__ == "__main__":
    run_or_exit(lambda: check_overrides("train_musicvae", sys.argv[1:]))
    main()
