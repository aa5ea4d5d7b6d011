"""``sample(cfg)``: rebuild a trained model from its checkpoint and write samples with a record."""

import json
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ddpm.training import build_model


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit its config."""


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint and check that it carries what ``sample.py`` needs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (expected a .ckpt written by train.py)")
    try:
        # Our own checkpoints hold Lightning loop state alongside the weights; they are the user's files.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from e
    missing = [k for k in ("state_dict", "run_config") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}: it was not written by this project's train.py")
    return ckpt


def restore(ckpt: dict, path: str | Path = "<checkpoint>"):
    """(module, datamodule) rebuilt from a loaded checkpoint, weights and data statistics restored."""
    run_cfg = OmegaConf.create(ckpt["run_config"])
    datamodule = instantiate(run_cfg.data)
    dm_state = ckpt.get(type(datamodule).__qualname__)
    if dm_state:
        datamodule.load_state_dict(dm_state)
    module = build_model(run_cfg, datamodule)
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not match the model its config describes: {e}") from e
    return module, datamodule


def infill_inputs(datamodule, frames, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(known, mask) for infilling frames ``[start, end)`` of the first ``n`` eval sequences."""
    if len(datamodule.sample_shape) != 2:
        raise ValueError(
            f"infill needs sequence data [frames, dims]; this model's samples are {datamodule.sample_shape}"
        )
    start, end = (int(f) for f in frames)
    length = datamodule.sample_shape[0]
    if not 0 <= start < end <= length:
        raise ValueError(f"infill=[{start},{end}] must satisfy 0 <= start < end <= {length} (frames)")
    datamodule.setup("validate")
    known = datamodule.val_set.tensors[0][:n]
    if len(known) < n:
        raise ValueError(f"infill needs n={n} eval sequences; the eval split has {len(known)}")
    mask = torch.ones_like(known)
    mask[:, start:end] = 0  # 0: regenerate, 1: keep
    return known, mask


def sample(cfg: DictConfig) -> dict[str, Path]:
    """Draw ``cfg.n`` samples from ``cfg.ckpt`` with ``cfg.seed``; write them and ``record.json``."""
    ckpt_path = Path(cfg.ckpt)
    ckpt = load_checkpoint(ckpt_path)
    module, datamodule = restore(ckpt, ckpt_path)
    device = torch.device(cfg.device)
    module.to(device)
    if cfg.get("compile"):  # x1.45 for the UNet on CPU after ~30 s of compilation (README benchmarks)
        module.ema = torch.compile(module.sampling_denoiser)
    out_dir = (
        Path(cfg.out_dir) if cfg.get("out_dir") else ckpt_path.parent / "samples" / f"{ckpt_path.stem}_seed{cfg.seed}"
    )
    known, mask = infill_inputs(datamodule, cfg.get("infill"), cfg.n) if cfg.get("infill") else (None, None)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(cfg.seed)
    samples = module.sample(cfg.n, generator, batch_size=cfg.batch_size, known=known, mask=mask)
    seconds = time.perf_counter() - start
    files = datamodule.write_samples(samples, out_dir, "generated")
    if known is not None:
        files.update({f"original_{k}": v for k, v in datamodule.write_samples(known, out_dir, "original").items()})
    record = {
        "checkpoint": str(ckpt_path.resolve()),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "n": cfg.n,
        "seed": cfg.seed,
        "infill": list(cfg.infill) if cfg.get("infill") else None,
        "device": str(device),
        "sampling_seconds": round(seconds, 3),
        "files": {k: str(v.name) for k, v in files.items()},
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_config": ckpt["run_config"],
    }
    record_path = out_dir / "record.json"
    record_path.write_text(json.dumps(record, indent=2, default=str))
    return {**files, "record": record_path}
