"""``train(cfg)``: build data, denoiser, diffusion and Trainer from a Hydra config and fit."""

import logging
import os
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ddpm.callbacks import RunConfig

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig, datamodule: L.LightningDataModule):
    """Denoiser, diffusion and DiffusionModule for ``cfg``; the data decides the sample shape and clipping."""
    denoiser = instantiate(cfg.model, sample_shape=datamodule.sample_shape)
    clip = cfg.diffusion.get("clip_x_start")
    diffusion = instantiate(cfg.diffusion, clip_x_start=datamodule.bounded if clip is None else clip)
    return instantiate(cfg.module, denoiser=denoiser, diffusion=diffusion)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured model; returns the final callback metrics (``train/loss``, ``val/loss``...)."""
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    datamodule = instantiate(cfg.data)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        # Data that is derived on first use (the melody latents) must exist before the model is
        # sized from it; Lightning's DDP workers start after this and find it on disk.
        datamodule.prepare_data()
    module = build_model(cfg, datamodule)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
    callbacks.append(RunConfig(OmegaConf.to_container(cfg, resolve=True)))
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    n_params = sum(p.numel() for p in module.denoiser.parameters())
    log.info("Denoiser %s: %.2fM parameters; run folder %s", type(module.denoiser).__name__, n_params / 1e6, output_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}
