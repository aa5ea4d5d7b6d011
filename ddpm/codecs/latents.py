"""Latent sequences: model space <-> original latents (``LatentSpace``), written as ``.npz`` and
Mittal's ``generated.pkl``."""

import pickle
from pathlib import Path

import numpy as np
import torch

from ddpm.errors import ConfigError
from ddpm.io.atomic import atomic_path
from ddpm.latent_space import REFILLS, LatentSpace
from ddpm.periods import PeriodPrior


class LatentCodec:
    """Args: ``seed``: default seed of the noise that re-fills dropped dimensions in ``decode``;
    ``refill``: ``shared`` (one draw per sequence), ``noise`` (per frame, as Mittal et al.) or ``zeros``."""

    bounded = False  # latents are not confined to [-1, 1]: not clipped unless diffusion.clip_x_start=true

    def __init__(self, seed: int = 0, refill: str = "shared"):
        self.seed = int(seed)
        self.set_refill(refill, "codec.refill")
        self.space: LatentSpace | None = None
        self.periods: PeriodPrior | None = None  # how often the train sequences loop (``ddpm.periods``)

    def fit(self, datamodule) -> None:
        """Take the data's fitted ``LatentSpace`` and the train split's period prior (after its ``setup``)."""
        if datamodule.space is None or datamodule.train_set is None:
            datamodule.setup("fit")
        self.space = datamodule.space
        self.periods = PeriodPrior.fit(datamodule.train_set.tensors[0])

    def set_refill(self, refill: str, field: str = "refill") -> None:
        """Fill dropped dimensions as ``refill`` says from now on (a sampling-time choice; ``field`` names the key)."""
        if refill not in REFILLS:
            raise ConfigError(f"{field}={refill!r}: expected one of {', '.join(REFILLS)}")
        self.refill = refill

    @property
    def sample_shape(self) -> tuple[int, int]:
        return self.space.sample_shape

    @property
    def clip_value(self) -> float:
        """Where ``diffusion.clip_x_start=true`` clips x_0 estimates: the box that holds the train split."""
        return self.space.bound

    def to_model(self, latents: np.ndarray) -> torch.Tensor:
        """Original latents ``[n, frames, dim]`` -> model space ``[n, seq_len, kept]`` (inverse of ``decode``)."""
        return torch.from_numpy(self.space.to_model(latents))

    def decode(self, x, seed: int | None = None) -> np.ndarray:
        """Model space ``[n, seq_len, kept]`` -> original latents ``[n, seq_len, dim]`` (numpy).

        Dropped dimensions are drawn from N(0, 1) with ``seed`` (default: the codec's ``seed``) as ``refill`` says.
        """
        x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)
        return self.space.to_latents(x, np.random.default_rng(self.seed if seed is None else seed), self.refill)

    def write(self, x, out_dir: str | Path, name: str, seed: int | None = None, latents=None) -> dict[str, Path]:
        """``name.npz`` (array ``samples``) and ``name.pkl`` (the same array: Mittal's generated.pkl).

        ``latents`` (original space) are written instead of ``decode(x, seed)`` when given.
        """
        samples = self.decode(x, seed) if latents is None else np.asarray(latents, np.float32)
        files = {"npz": Path(out_dir) / f"{name}.npz", "pkl": Path(out_dir) / f"{name}.pkl"}
        with atomic_path(files["npz"]) as tmp, open(tmp, "wb") as f:
            np.savez(f, samples=samples)
        with atomic_path(files["pkl"]) as tmp, open(tmp, "wb") as f:
            pickle.dump(samples, f)
        return files

    def log(self, x, writer, step: int) -> None:
        writer.add_histogram("samples/latents", x.detach().cpu(), step)

    def state_dict(self) -> dict:
        periods = self.periods.state_dict() if self.periods is not None else None
        return {"space": self.space.state_dict(), "periods": periods}

    def load_state_dict(self, state: dict) -> None:
        self.space = LatentSpace.from_state(state["space"])
        # Runs trained before session 13 hold no period prior: they sample without loops.
        self.periods = PeriodPrior.from_state(state["periods"]) if state.get("periods") else None
