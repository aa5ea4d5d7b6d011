"""Make the melody chain's latent folder: ``python prepare.py`` (see conf/prepare.yaml)."""

import json
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ddpm.config_check import check_overrides
from ddpm.errors import run_or_exit
from ddpm.training import build, discarded_if_refused


def prepare_or_discard(cfg: DictConfig) -> dict:
    """Run the prepare stage; when bad input stops it, the log folder it left empty is removed."""
    with discarded_if_refused(HydraConfig.get().runtime.output_dir, "prepare.log"):
        return build(cfg.prepare, "prepare").run()


@hydra.main(version_base="1.3", config_path="conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    manifest = run_or_exit(lambda: prepare_or_discard(cfg))
    keys = ("input_shape", "active_dims", "musicvae_fit", "splits", "seconds")
    print(json.dumps({k: manifest[k] for k in keys if k in manifest}))  # a folder made before session 24 has no fit


if __name__ == "__main__":
    run_or_exit(lambda: check_overrides("prepare", sys.argv[1:]))
    main()
