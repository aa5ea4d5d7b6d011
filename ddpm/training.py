"""``train(cfg)``: run the prepare stage, build data, codec, denoiser, diffusion and Trainer from a Hydra
config, and fit."""

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, Timer
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ddpm.callbacks import RNGState, RunConfig
from ddpm.checkpoint_io import CheckpointError, read_checkpoint
from ddpm.config_check import check_values
from ddpm.errors import ConfigError, UserError
from ddpm.module import NonFiniteLossError

log = logging.getLogger(__name__)


def build(node: DictConfig, key: str, **kwargs):
    """``instantiate(node, **kwargs)``; a constructor's complaint becomes a ``ConfigError`` naming ``key``."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        cause = " ".join(str(e.__cause__ or e).split())
        raise ConfigError(f"{key} ({node.get('_target_')}): {cause}") from e
    except OmegaConfBaseException as e:
        raise ConfigError(f"{key}: {' '.join(str(e).split())}") from e


def build_model(cfg: DictConfig, codec):
    """Denoiser, diffusion and DiffusionModule for ``cfg``; the codec decides the sample shape and clipping."""
    denoiser = build(cfg.model, "model", sample_shape=codec.sample_shape)
    clip = cfg.diffusion.get("clip_x_start")
    clip = codec.bounded if clip is None else clip
    bound = cfg.diffusion.get("clip_value")  # +diffusion.clip_value=b; else the codec's (images: 1; latents: their box)
    bound = codec.clip_value if bound is None else bound
    diffusion = build(cfg.diffusion, "diffusion", clip_x_start=clip, clip_value=bound)
    return build(cfg.module, "module", denoiser=denoiser, diffusion=diffusion, seed=cfg.get("seed", 0), codec=codec)


def prepare(cfg: DictConfig) -> dict | None:
    """Run the prepare stage (``cfg.prepare``, e.g. the melody chain's latent folder) when there is one,
    on the first process of the node only; returns its manifest there."""
    if not cfg.get("prepare") or int(os.environ.get("LOCAL_RANK", 0)) != 0:
        return None
    manifest = build(cfg.prepare, "prepare").run()
    log.info("prepared %s: %s", cfg.prepare.get("out_dir"), {k: manifest[k] for k in ("splits", "seconds")})
    return manifest


def prepare_once(datamodule: L.LightningDataModule) -> None:
    """Run ``prepare_data`` here, on the first process of the node only, and not again inside ``fit``.

    Data fetched on first use (MNIST with ``download``) must exist before the codec is fitted on it;
    Lightning's DDP workers start later and find it on disk.
    """
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        datamodule.prepare_data()
    datamodule.prepare_data = _prepared  # Lightning would call it again on rank 0 at the start of fit


def _prepared() -> None:
    """``prepare_data`` after ``prepare_once``: done already."""


def discard_unused_run(output_dir: str | Path, log_name: str = "train.log") -> bool:
    """Remove a run folder that a start refused for bad input left behind: one that holds nothing but
    Hydra's ``.hydra/`` and the job's log (``log_name``), so no checkpoint, sample or event file. Its
    date folder goes too when that is left empty. Returns whether the run folder was removed."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir() or any(p.name not in (".hydra", log_name) for p in output_dir.iterdir()):
        return False
    shutil.rmtree(output_dir)
    parent = output_dir.parent
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", parent.name) and not any(parent.iterdir()):
        parent.rmdir()
    return True


@contextmanager
def discarded_if_refused(output_dir: str | Path, log_name: str = "train.log") -> Iterator[None]:
    """Run the body; when bad input (a ``UserError``) stops it, ``discard_unused_run`` its run folder."""
    try:
        yield
    except UserError:
        discard_unused_run(output_dir, log_name)
        raise


class Resume(NamedTuple):
    """The checkpoint a run resumes from, and the shapes of its weights (to check against the model)."""

    path: str
    shapes: dict[str, tuple[int, ...]]


def refuse_early(cfg: DictConfig) -> Resume | None:
    """What can be checked before the prepare stage (minutes of corpus extraction and encoding on a new
    clone): values, the checkpoint to resume, and the diffusion process, which needs no data to build.
    Returns the checkpoint to resume (``ckpt_path``), or None."""
    check_values(cfg)
    ckpt_path, resume = cfg.get("ckpt_path"), None
    if ckpt_path and not Path(ckpt_path).is_file():
        raise CheckpointError(f"ckpt_path={ckpt_path}: no such file (resume from a run folder's last.ckpt)")
    if ckpt_path:  # read now, before the prepare stage and the run folder: a file that cannot resume says so
        checkpoint = read_checkpoint(ckpt_path, "checkpoint to resume (ckpt_path)")
        if not isinstance(checkpoint, dict) or not {"state_dict", "optimizer_states"} <= set(checkpoint):
            raise CheckpointError(
                f"ckpt_path={ckpt_path}: no training state in it (not a run's checkpoint: an exported one such as "
                "checkpoints/melody.ckpt samples but cannot resume); resume from a run folder's last.ckpt"
            )
        weights = checkpoint["state_dict"] if isinstance(checkpoint["state_dict"], dict) else {}
        resume = Resume(ckpt_path, {k: tuple(getattr(v, "shape", ())) for k, v in weights.items()})
    clip, bound = cfg.diffusion.get("clip_x_start"), cfg.diffusion.get("clip_value")  # null: the codec's, later
    build(cfg.diffusion, "diffusion", clip_x_start=clip or False, clip_value=1.0 if bound is None else bound)
    optimizer = (cfg.get("module") or {}).get("optimizer")
    if optimizer is not None:  # its settings (weight_decay=-1) are checked when it is made: make one now
        try:
            build(optimizer, "module.optimizer")([torch.nn.Parameter(torch.zeros(1))])
        except (ValueError, TypeError) as e:
            raise ConfigError(f"module.optimizer ({optimizer.get('_target_')}): {e}") from None
    return resume


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured model; returns the final callback metrics (``train/loss``, ``val/loss``...)."""
    resume = refuse_early(cfg)
    ckpt_path = resume.path if resume else None
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    prepare(cfg)
    datamodule = build(cfg.data, "data")
    prepare_once(datamodule)
    # Again, so the model's initialization and the data order do not depend on what data preparation
    # drew (training a MusicVAE there re-seeds): the same seed, the same model, cache or not.
    L.seed_everything(cfg.seed, workers=True)
    codec = build(cfg.codec, "codec")
    codec.fit(datamodule)
    module = build_model(cfg, codec)
    if resume:  # another model's checkpoint: refused before the logger and the trainer write to the run folder
        try:
            module.check_fits(resume.shapes)
        except CheckpointError as e:
            raise CheckpointError(f"ckpt_path={ckpt_path}: {e}") from None
    warn_if_unclipped(module.diffusion)
    if cfg.get("compile"):  # in place: parameter names and checkpoints stay those of the plain model
        module.denoiser.compile()
    nodes = cfg.get("callbacks") or {}
    callbacks = [build(c, f"callbacks.{name}") for name, c in nodes.items() if c is not None]
    callbacks += [RunConfig(OmegaConf.to_container(cfg, resolve=True)), RNGState()]
    logger = build(cfg.logger, "logger") if cfg.get("logger") else False
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=logger)
    n_params = sum(p.numel() for p in module.denoiser.parameters())
    log.info("Denoiser %s: %.2fM parameters; run folder %s", type(module.denoiser).__name__, n_params / 1e6, output_dir)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except NonFiniteLossError as e:
        last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        raise NonFiniteLossError(f"{e}. The last good checkpoint is {last or 'not written yet'}") from None
    except CheckpointError as e:  # the resumed checkpoint does not fit this config: name the file
        raise CheckpointError(f"ckpt_path={ckpt_path}: {e}" if ckpt_path else str(e)) from None
    warn_if_time_limited(trainer, cfg)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def warn_if_unclipped(diffusion, lowest: float = 1e-6) -> None:
    """Say so when the schedule ends with almost no signal (alpha_bar_T < ``lowest``: the cosine schedule's
    2.4e-9, not Ho's 4e-5 or Mittal's 6.6e-3) and x_0 estimates are not clipped: the first steps divide the
    network's eps error by sqrt(alpha_bar_T), and the samples blow up (README, "Clipping")."""
    end = float(diffusion.alphas_cumprod[-1])
    if not diffusion.clip_x_start and end < lowest:
        log.warning(
            "the noise schedule ends at alpha_bar_T = %.1e and diffusion.clip_x_start is off: unclipped x_0 "
            "estimates of the first steps will blow the samples up; train with diffusion.clip_x_start=true",
            end,
        )


def warn_if_time_limited(trainer: L.Trainer, cfg: DictConfig) -> None:
    """Say so when ``trainer.max_time`` ended training before ``trainer.max_epochs``, and how to train on:
    the elapsed time is part of the checkpoint, so a resume under the same limit stops at once."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    early = any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks)
    steps_done = 0 < trainer.max_steps <= trainer.global_step
    # The epoch it was in, from 1: Lightning counts a cut epoch as done, except when a resume stopped at once.
    batches = trainer.num_training_batches
    started = -(-trainer.global_step // batches) if 0 < batches < float("inf") else 0
    epoch, epochs = max(trainer.current_epoch, started), trainer.max_epochs or -1
    if not trainer.is_global_zero or remaining is None or remaining > 0 or early or steps_done or epoch >= epochs:
        return  # no limit, time left, or another limit ended it (epochs < 0: none)
    last = (trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else "") or cfg.get("ckpt_path")
    log.warning(
        "trainer.max_time=%s ended training in epoch %d of trainer.max_epochs=%d (step %d): this model is less "
        "trained than one that ran all its epochs. To train on, resume with the same overrides plus ckpt_path=%s "
        "trainer.max_time=null, or a longer limit (it counts the time already spent, so under the same limit a "
        "resume stops at once)",
        cfg.trainer.get("max_time"),
        epoch,
        epochs,
        trainer.global_step,
        last or "<run>/last.ckpt",
    )
