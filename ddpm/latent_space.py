"""The map between original latents and the diffusion model's space, fitted on the train split.

Original latents ``[n, frames, dim]`` -> model space ``[n, seq_len, len(dims)]``: the first
``seq_len`` frames, the kept ``dims`` (Mittal's melody setting keeps 42 of 512), scaled with statistics
fitted on the train split: ``minmax`` to [-1, 1] with one min and max (Mittal et al.), ``standard``
to mean 0 and variance 1 (as latent diffusion rescales its latents, Rombach et al. 2022: the noise
schedule then gives the signal-to-noise ratios it gives unit-variance data), or ``centered``: each
dimension's own mean removed, then one scale to variance 1, so that the dimensions keep their
relative spread and the data have mean 0 in every dimension, as sampling from x_T ~ N(0, I) assumes
(with Mittal's schedule sqrt(alpha_bar_T) = 0.08, so a mean the data keep survives to step T). The inverse re-inflates
to ``dim`` with standard normal noise in the dropped dimensions, as Mittal et al. do before
decoding; ``refill`` says whether each frame gets its own draw (Mittal's ``noise``), the frames of a
sequence share one (``shared``: frames the model made equal decode alike), or the dropped dimensions
take the prior mean (``zeros``).
"""

from dataclasses import asdict, dataclass

import numpy as np

REFILLS = ("noise", "shared", "zeros")
NORMALIZE = ("minmax", "standard", "centered", "none")


def normalize_mode(value) -> str:
    """``normalize`` as one of ``NORMALIZE``; ``True``/``False`` (older configs) are ``minmax``/``none``."""
    if isinstance(value, bool):
        return "minmax" if value else "none"
    if value not in NORMALIZE:
        raise ValueError(f"normalize={value!r}: expected one of {', '.join(NORMALIZE)} (or true/false)")
    return value


@dataclass
class LatentSpace:
    dim: int  # latent size of the records (512 for MusicVAE)
    seq_len: int  # frames kept from the start of each record
    dims: list[int] | None  # kept dimensions (None: all)
    data_min: float = -1.0  # train split's scalar min and max (minmax: model space = [-1, 1])
    data_max: float = 1.0
    normalize: str = "minmax"  # minmax | standard | centered | none (True/False: minmax/none)
    data_mean: float | list[float] = 0.0  # train split's mean (centered: one per kept dim) and scalar std
    data_std: float = 1.0

    def __post_init__(self):
        self.normalize = normalize_mode(self.normalize)
        kept = len(self.dims) if self.dims is not None else self.dim
        if isinstance(self.data_mean, list) and len(self.data_mean) != kept:
            raise ValueError(f"data_mean holds {len(self.data_mean)} means for {kept} kept dimensions")

    @property
    def sample_shape(self) -> tuple[int, int]:
        return (self.seq_len, len(self.dims) if self.dims is not None else self.dim)

    @property
    def bound(self) -> float:
        """Half-width of a box about 0 in model space that holds every train latent: the train split's
        scalar min and max scaled as each kept dimension is (the bound ``clip_x_start`` clips to)."""
        ends = np.array([[self.data_min], [self.data_max]], np.float32)  # (2, 1); centered: (2, kept) once scaled
        return float(np.abs(self.scale(ends)).max())

    def to_model(self, latents: np.ndarray) -> np.ndarray:
        """Original latents ``[n, frames >= seq_len, dim]`` -> model space ``[n, seq_len, kept]`` float32."""
        x = np.asarray(latents, np.float32)[:, : self.seq_len]
        return self.scale(x[..., self.dims] if self.dims is not None else x)

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Selected latents ``[n, seq_len, kept]`` -> model space (``normalize``: one of ``NORMALIZE``)."""
        x = np.asarray(x, np.float32)
        if self.normalize in ("standard", "centered"):
            return ((x - np.asarray(self.data_mean, np.float32)) / self.data_std).astype(np.float32)
        if self.normalize == "minmax":
            return ((x - self.data_min) / (self.data_max - self.data_min) * 2 - 1).astype(np.float32)
        return x

    def unscale(self, x: np.ndarray) -> np.ndarray:
        """The inverse of ``scale``."""
        x = np.asarray(x, np.float32)
        if self.normalize in ("standard", "centered"):
            return x * self.data_std + np.asarray(self.data_mean, np.float32)
        if self.normalize == "minmax":
            return (x + 1) / 2 * (self.data_max - self.data_min) + self.data_min
        return x

    def to_latents(self, x: np.ndarray, rng: np.random.Generator, refill: str = "noise") -> np.ndarray:
        """Model space ``[n, seq_len, kept]`` -> original latents ``[n, seq_len, dim]``; dropped dims ~ N(0, 1),
        drawn per frame (``refill="noise"``) or once per sequence (``"shared"``), or 0 (``"zeros"``)."""
        if refill not in REFILLS:
            raise ValueError(f"refill={refill!r}: expected one of {', '.join(REFILLS)}")
        x = self.unscale(x)
        if self.dims is None:
            return x.astype(np.float32)
        shape = (*x.shape[:-1], self.dim)
        if refill == "noise":
            full = rng.standard_normal(shape)
        elif refill == "shared":  # one draw per sequence, the same for each of its frames
            full = np.repeat(rng.standard_normal((*x.shape[:-2], 1, self.dim)), x.shape[-2], axis=-2)
        else:
            full = np.zeros(shape)
        full[..., self.dims] = x
        return full.astype(np.float32)

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "LatentSpace":
        dims = state.get("dims")
        return cls(
            dim=int(state["dim"]),
            seq_len=int(state["seq_len"]),
            dims=[int(d) for d in dims] if dims is not None else None,
            data_min=float(state["data_min"]),
            data_max=float(state["data_max"]),
            normalize=state.get("normalize", True),  # __post_init__ maps the old booleans
            data_mean=_mean(state.get("data_mean", 0.0)),
            data_std=float(state.get("data_std", 1.0)),
        )


def _mean(value) -> float | list[float]:
    """A stored ``data_mean``: a scalar, or one per kept dimension (``centered``)."""
    return [float(v) for v in value] if isinstance(value, list | tuple | np.ndarray) else float(value)
