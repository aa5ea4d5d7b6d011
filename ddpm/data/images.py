"""Image data for validating the diffusion core: scikit-learn's 8x8 digits (bundled, no download)
and MNIST (torchvision's files). Model space is [-1, 1] (Ho et al.); ``ddpm.codecs.images`` maps back.
"""

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ddpm.data.mvae import Rows, UnrepeatedSampler

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def load_digits_split(val_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1797 digits as ``(x_train, x_val, y_train, y_val)``, x in [-1, 1], ``[N, 1, 8, 8]``.

    The split is stratified by label with ``seed``; ``val_fraction`` of the digits are held out.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0 * 2 - 1).astype(np.float32)[:, None]
    return train_test_split(x, digits.target, test_size=val_fraction, random_state=seed, stratify=digits.target)


class ImageDataModule(L.LightningDataModule):
    """Shared loaders; subclasses fill ``train_set`` / ``val_set`` in ``setup``."""

    sample_shape: tuple[int, int, int]

    def __init__(self, batch_size: int = 128, num_workers: int = 0):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_set: Rows | None = None
        self.val_set: Rows | None = None

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, self.batch_size, shuffle=True, num_workers=self.num_workers, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = UnrepeatedSampler(self.val_set, world, self.trainer.global_rank) if world > 1 else None
        return DataLoader(self.val_set, self.batch_size, sampler=sampler, num_workers=self.num_workers)


class DigitsDataModule(ImageDataModule):
    """8x8 digits: a stratified train/val split of scikit-learn's copy (``val_fraction`` held out)."""

    sample_shape = (1, 8, 8)

    def __init__(self, batch_size: int = 128, val_fraction: float = 0.2, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, num_workers)
        self.val_fraction = val_fraction
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        x_train, x_val, _, _ = load_digits_split(self.val_fraction, self.seed)
        self.train_set, self.val_set = Rows(torch.from_numpy(x_train)), Rows(torch.from_numpy(x_val))


class MNISTDataModule(ImageDataModule):
    """MNIST 28x28 from torchvision's raw IDX files in ``root/MNIST/raw``: train split to train on,
    the 10k test split for ``val/loss``. ``download=true`` fetches them once in ``prepare_data``."""

    sample_shape = (1, 28, 28)

    def __init__(self, root: str = "data", batch_size: int = 128, num_workers: int = 0, download: bool = False):
        super().__init__(batch_size, num_workers)
        self.root = Path(root)
        self.download = download

    def prepare_data(self) -> None:
        if self.download:
            from torchvision.datasets import MNIST

            MNIST(str(self.root), train=True, download=True)
            MNIST(str(self.root), train=False, download=True)

    def setup(self, stage: str | None = None) -> None:
        from torchvision.datasets import MNIST

        raw = (self.root / "MNIST" / "raw").resolve()
        missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"MNIST files missing in {raw}: {', '.join(missing)}. Put torchvision's uncompressed IDX files "
                f"there, or run once with data.download=true (needs internet)."
            )
        sets = []
        for train in (True, False):
            images = MNIST(str(self.root), train=train, download=False).data
            sets.append(Rows((images.float() / 255 * 2 - 1)[:, None].contiguous()))
        self.train_set, self.val_set = sets
