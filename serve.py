"""The studio: ``python serve.py [ckpt=outputs/<run>/last.ckpt]`` serves a local page to generate,
infill and interpolate melodies (README, "Studio"); it prints the URL."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ddpm.config_check import check_overrides
from ddpm.errors import run_or_exit

SAMPLERS = Path(__file__).resolve().parent / "conf" / "sampler"


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from ddpm.studio.server import serve

    run_or_exit(lambda: serve(cfg, SAMPLERS))


if __name__ == "__main__":
    run_or_exit(lambda: check_overrides("serve", sys.argv[1:]))
    main()
