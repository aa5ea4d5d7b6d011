"""Sample from a checkpoint: ``python sample.py ckpt=outputs/.../last.ckpt n=64 seed=0``."""

import sys

import hydra
from omegaconf import DictConfig

from ddpm.config_check import check_overrides
from ddpm.errors import run_or_exit
from ddpm.progress import to_stderr
from ddpm.sampling import sample


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    to_stderr()
    files = run_or_exit(lambda: sample(cfg))
    for kind, path in files.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    run_or_exit(lambda: check_overrides("sample", sys.argv[1:]))
    main()
