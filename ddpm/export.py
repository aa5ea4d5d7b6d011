"""Export a training checkpoint for shipping: the EMA weights, the config and the codec state.

    python -m ddpm.export outputs/<run>/last.ckpt checkpoints/melody.ckpt [--musicvae checkpoints/musicvae.pt]

The result has no optimizer or loop state: the sampling (EMA) weights become the only denoiser and
the config says ``module.ema_decay: null``, so ``ddpm.sampling.load_checkpoint`` / ``restore``
rebuild a model that samples exactly as the source checkpoint does, from about a quarter of its size.
Every value is a tensor or a plain Python type, so it loads with ``torch.load(weights_only=True)``.
"""

import argparse
import copy
from pathlib import Path

import torch

from ddpm.errors import UserError, run_or_exit

KEPT = ("epoch", "global_step", "pytorch-lightning_version", "spread")  # informative, and the spread; no training state


def sampling_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The module's weights with the EMA copy (``ema.*``) as the denoiser, and no separate EMA."""
    has_ema = any(k.startswith("ema.") for k in state_dict)
    out = {}
    for key, value in state_dict.items():
        if has_ema and key.startswith("denoiser."):
            continue  # the raw training weights: replaced by their moving average
        name = "denoiser." + key[len("ema.") :] if key.startswith("ema.") else key
        out[name] = value.detach().clone().contiguous()
    return out


def export_checkpoint(src: str | Path, dst: str | Path, musicvae: str | Path | None = None) -> dict:
    """Write the shipping checkpoint of ``src`` to ``dst`` (atomically); returns a summary.

    Args:
        src: a checkpoint written by ``train.py``.
        dst: where the exported checkpoint goes.
        musicvae: for melody models, the MusicVAE path to store in the config (the source
            run's path otherwise, often absolute and machine-specific).
    """
    from ddpm.checkpoint_io import atomic_save
    from ddpm.legacy import upgrade_checkpoint
    from ddpm.music.vae_io import load_musicvae
    from ddpm.sampling import load_checkpoint, restore

    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        raise UserError(f"{dst}: a folder; expected the file to write the exported checkpoint to")
    if dst.exists() and src.exists() and dst.samefile(src):  # it would replace the file it reads, and lose its history
        raise UserError(f"{dst}: the checkpoint being exported; expected another file to write the export to")
    ckpt = upgrade_checkpoint(load_checkpoint(src))  # a CheckpointError is a UserError
    run_config = copy.deepcopy(ckpt["run_config"])
    run_config["module"]["ema_decay"] = None  # the single denoiser already holds the EMA weights
    if musicvae is not None:
        if "musicvae" not in run_config.get("codec", {}):
            raise UserError(f"--musicvae given, but {src} is not a melody model (its codec has no musicvae)")
        if not Path(musicvae).is_file():
            raise UserError(f"--musicvae {musicvae}: no such file (expected a MusicVAE checkpoint)")
        load_musicvae(musicvae)  # one that is not a MusicVAE is refused before anything is written
        run_config["codec"]["musicvae"] = str(musicvae)
    exported = {k: ckpt[k] for k in KEPT if k in ckpt}
    exported["state_dict"] = sampling_state_dict(ckpt["state_dict"])
    exported["run_config"] = run_config
    exported["codec"] = copy.deepcopy(ckpt.get("codec"))
    exported["exported_from"] = {"path": str(src), "size_bytes": src.stat().st_size}
    atomic_save(exported, dst)

    torch.load(dst, map_location="cpu", weights_only=True)  # plain types only: loads safely
    module, _ = restore(load_checkpoint(dst), dst)  # and rebuilds the model
    params = sum(p.numel() for p in module.denoiser.parameters())
    return {"path": dst, "size_bytes": dst.stat().st_size, "source_bytes": src.stat().st_size, "parameters": params}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ddpm.export", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="a checkpoint written by train.py (outputs/<run>/last.ckpt)")
    parser.add_argument("dst", help="the exported checkpoint (e.g. checkpoints/melody.ckpt)")
    parser.add_argument("--musicvae", help="MusicVAE path to store in a melody model's config")
    args = parser.parse_args(argv)
    summary = run_or_exit(lambda: export_checkpoint(args.src, args.dst, args.musicvae))
    mb = 1024 * 1024
    print(
        f"wrote {summary['path']}: {summary['size_bytes'] / mb:.1f} MB "
        f"({summary['parameters'] / 1e6:.2f} M parameters; source {summary['source_bytes'] / mb:.1f} MB)"
    )


if __name__ == "__main__":
    main()
