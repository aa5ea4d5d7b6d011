"""Sample from a checkpoint: ``python sample.py ckpt=outputs/.../last.ckpt n=64 seed=0``."""

import sys

import hydra
from omegaconf import DictConfig

from ddpm.sampling import CheckpointError, sample


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    try:
        files = sample(cfg)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for kind, path in files.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
