"""MusicVAE files and batch coding: save/load a MusicVAE with the config that rebuilds it, encode event
windows to (mu, sigma), decode latent sequences to melodies."""

from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ddpm.checkpoint_io import CheckpointError, atomic_save, check_targets, read_checkpoint
from ddpm.errors import MissingFileError
from ddpm.music.events import WINDOW_STEPS
from ddpm.music.musicvae import MusicVAE
from ddpm.progress import Progress

PROJECT_DIR = Path(__file__).resolve().parents[2]


def musicvae_file(path: str | Path) -> Path:
    """``path``; a relative one missing from the working directory is looked up in the project folder too,
    so a checkpoint naming ``checkpoints/musicvae.pt`` decodes when ``sample.py`` runs from elsewhere."""
    path = Path(path)
    if path.is_absolute() or path.is_file():
        return path
    inside = PROJECT_DIR / path
    return inside if inside.is_file() else path


def save_musicvae(model: MusicVAE, config: dict, path: str | Path, metrics: dict | None = None) -> Path:
    """Weights + ``config`` (a ``_target_`` node that rebuilds the model), written atomically."""
    return atomic_save({"config": config, "state_dict": model.state_dict(), "metrics": metrics or {}}, path)


def load_musicvae(path: str | Path) -> MusicVAE:
    """The MusicVAE saved by ``save_musicvae`` (found as ``musicvae_file`` finds it); read without running
    code from the file."""
    path = musicvae_file(path)
    if not path.is_file():
        raise MissingFileError(
            f"MusicVAE checkpoint not found: {path} (looked in {Path.cwd()} and {PROJECT_DIR}; "
            "train one with `python train_musicvae.py`)"
        )
    payload = read_checkpoint(path, "MusicVAE file")
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path} is not a MusicVAE file (expected 'config' and 'state_dict')")
    check_targets(payload["config"], path)
    try:
        model = instantiate(OmegaConf.create(payload["config"]))
        if not isinstance(model, MusicVAE):
            raise TypeError(f"its config builds a {type(model).__name__}")
        model.load_state_dict(payload["state_dict"])
    except (InstantiationException, OmegaConfBaseException, RuntimeError, TypeError, ValueError) as e:
        first = next((line for line in str(e.__cause__ or e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"{path} is not a usable MusicVAE file: {first}") from e
    return model.eval()


@torch.no_grad()
def encode_windows(
    model: MusicVAE, events: np.ndarray, batch_size: int = 1024, what: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of each window ``[N, 32]``: two ``[N, z_dim]`` float32 arrays; with ``what``, progress
    is logged as "<what> n/N windows"."""
    device = next(model.parameters()).device  # runs where the model is
    mus, sigmas = [], []
    progress = Progress(what, len(events), "windows") if what else None
    for start in range(0, len(events), batch_size):
        mu, sigma = model.encode(torch.from_numpy(events[start : start + batch_size]).to(device))
        mus.append(mu.cpu().numpy())
        sigmas.append(sigma.cpu().numpy())
        if progress is not None:
            progress.step(len(mu))
    if progress is not None:
        progress.log()
    return np.concatenate(mus), np.concatenate(sigmas)


@torch.no_grad()
def reconstruction(
    model: MusicVAE, events: np.ndarray, keep: list[int] | None = None, batch_size: int = 1024, seed: int = 0
) -> tuple[float, float]:
    """(token accuracy, share of windows exact) of greedy decoding from mu of windows ``[N, 32]``.

    With ``keep``, only those dims of mu are kept and the rest drawn from N(0, 1), as diffusion samples
    are decoded (the diffusion model sees only the active dims): what the chain can at best give back.
    """
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    correct = []
    for start in range(0, len(events), batch_size):
        x = torch.from_numpy(events[start : start + batch_size]).to(device)
        mu, _ = model.encode(x)
        if keep is not None:
            z = torch.from_numpy(rng.standard_normal(tuple(mu.shape), dtype=np.float32)).to(device)
            z[:, keep] = mu[:, keep]
            mu = z
        correct.append((model.generate(mu) == x).cpu().numpy())
    correct = np.concatenate(correct)
    return float(correct.mean()), float(correct.all(axis=1).mean())


@torch.no_grad()
def decode_latents(model: MusicVAE, latents: np.ndarray, temperature: float = 0.0, seed: int = 0) -> np.ndarray:
    """Latent sequences ``[n, frames, z_dim]`` -> melodies ``[n, frames * 32]`` (events)."""
    n, frames, z_dim = latents.shape
    z = torch.from_numpy(np.ascontiguousarray(latents, np.float32)).reshape(n * frames, z_dim)
    z = z.to(next(model.parameters()).device)  # runs where the model is
    events = model.generate(z, temperature, generator=torch.Generator().manual_seed(seed))
    return events.reshape(n, frames * WINDOW_STEPS).cpu().numpy()
