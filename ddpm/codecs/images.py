"""Images in [-1, 1] (Ho et al.) -> [0, 1] arrays, ``.npz`` and a PNG grid."""

import math
from pathlib import Path

import numpy as np
import torch


class ImageCodec:
    """Args: ``sample_shape`` ``[C, H, W]``; taken from the data by ``fit`` when not given."""

    bounded = True  # model space is [-1, 1]: the diffusion may clip its x_0 estimates
    clip_value = 1.0

    def __init__(self, sample_shape: list[int] | None = None):
        self.sample_shape = tuple(int(s) for s in sample_shape) if sample_shape else None

    def fit(self, datamodule) -> None:
        self.sample_shape = tuple(datamodule.sample_shape)

    def decode(self, x, seed: int | None = None) -> np.ndarray:
        """Model space -> images in [0, 1], ``[n, C, H, W]`` (numpy)."""
        x = x.detach().float().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        return ((x + 1) / 2).clamp(0, 1).numpy()

    def grid(self, x) -> torch.Tensor:
        from torchvision.utils import make_grid

        images = torch.from_numpy(self.decode(x))
        return make_grid(images, nrow=math.ceil(math.sqrt(len(images))), padding=1, pad_value=1.0)

    def write(self, x, out_dir: str | Path, name: str, seed: int | None = None, latents=None) -> dict[str, Path]:
        """``name.npz`` (array ``samples`` in [0, 1], ``[n, C, H, W]``) and ``name.png`` (a grid)."""
        from torchvision.utils import save_image

        from ddpm.io.atomic import atomic_path

        files = {"npz": Path(out_dir) / f"{name}.npz", "png": Path(out_dir) / f"{name}.png"}
        with atomic_path(files["npz"]) as tmp, open(tmp, "wb") as f:
            np.savez(f, samples=self.decode(x))
        with atomic_path(files["png"]) as tmp:
            save_image(self.grid(x), tmp, format="png")
        return files

    def log(self, x, writer, step: int) -> None:
        writer.add_image("samples", self.grid(x), step)

    def state_dict(self) -> dict:
        return {"sample_shape": list(self.sample_shape)}

    def load_state_dict(self, state: dict) -> None:
        self.sample_shape = tuple(int(s) for s in state["sample_shape"])
