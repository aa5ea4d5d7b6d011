"""Score a melody run like Mittal et al.'s Table 1: ``python evaluate.py ckpt=outputs/.../last.ckpt n=256``."""

import sys

import hydra
from omegaconf import DictConfig

from ddpm.config_check import check_overrides
from ddpm.errors import run_or_exit
from ddpm.evaluation import evaluate
from ddpm.progress import to_stderr


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    to_stderr()
    files = run_or_exit(lambda: evaluate(cfg))
    for kind, path in files.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    run_or_exit(lambda: check_overrides("evaluate", sys.argv[1:]))
    main()
