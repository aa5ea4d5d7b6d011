"""Config helpers for tests: tiny, fast versions of the real configs."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"

FAST = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "diffusion.betas.timesteps=10",
    "callbacks.samples.n=4",
    "callbacks.samples.every_n_epochs=1",
]


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=overrides)
    if output_dir is not None:
        cfg.paths.output_dir = str(output_dir)
    return cfg
