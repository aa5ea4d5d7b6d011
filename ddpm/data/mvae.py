"""``data=mvae``: sequences of MusicVAE latents from Mittal-format TFRecord shards.

    <dir>/train-*.tfrecord, <dir>/eval-*.tfrecord   (records: inputs + input_shape, see tfrecords.py)

Model space (``ddpm.latent_space.LatentSpace``, fitted in ``setup`` and exposed as ``space``): the
first ``seq_len`` frames, the ``slice_dims`` kept (Mittal's melody setting keeps 42 of 512), min-max
scaled to [-1, 1] with one scalar min and max from the train split. The way back to latents and
music is the codec's (``ddpm.codecs``), which takes ``space`` from here.
"""

import pickle
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from ddpm.errors import ConfigError, MissingFileError
from ddpm.io.tfrecords import RecordError, read_latents
from ddpm.latent_space import LatentSpace, normalize_mode


class Rows(TensorDataset):
    """A TensorDataset of one tensor whose items are plain rows (batches collate to a tensor)."""

    def __getitem__(self, index):
        return self.tensors[0][index]


class UnrepeatedSampler(DistributedSampler):
    """Rank ``r`` of ``R`` takes indices ``r, r + R, ...``: every record exactly once over all ranks.

    Lightning's default DistributedSampler pads the split so ranks get equal shares, which would
    count some eval records twice in ``val/loss``.
    """

    def __init__(self, dataset, num_replicas: int, rank: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class LatentDataModule(L.LightningDataModule):
    """Latent sequences for ``DenseDDPM`` / ``TransformerDDPM``.

    Args:
        dir: folder with ``train-*.tfrecord`` and ``eval-*.tfrecord`` shards.
        input_shape: ``[frames, dims]`` every record must have.
        seq_len: frames kept from the start of each sequence (all when ``None``).
        slice_dims: latent dimensions kept: a list of indices, or the path of a pickled list
            (read when first needed); ``None`` keeps all.
        normalize: ``minmax`` (or true): to [-1, 1] with the train split's scalar min and max (Mittal et
            al.); ``standard``: to mean 0, variance 1 with its scalar mean and std; ``none`` (or false).
        limit: at most this many records per split (shards read in name order).
    """

    def __init__(
        self,
        dir: str = "data/mvae",
        input_shape: Sequence[int] = (32, 512),
        seq_len: int | None = None,
        slice_dims: Sequence[int] | str | None = None,
        normalize: bool | str = "minmax",
        limit: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        super().__init__()
        self.dir = Path(dir)
        self.input_shape = tuple(int(s) for s in input_shape)
        if len(self.input_shape) != 2:
            raise ConfigError(f"data.input_shape must be [frames, dims], got {list(self.input_shape)}")
        frames = self.input_shape[0]
        if seq_len is not None and not 1 <= seq_len <= frames:
            raise ConfigError(f"data.seq_len={seq_len} must be between 1 and the records' {frames} frames")
        self.seq_len = seq_len or frames
        self._slice_source = slice_dims if isinstance(slice_dims, str) else None
        self._slice_dims = None if slice_dims is None or isinstance(slice_dims, str) else self._check_dims(slice_dims)
        try:
            self.normalize = normalize_mode(normalize)
        except ValueError as e:
            raise ConfigError(f"data.{e}") from None
        self.limit = limit
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.space: LatentSpace | None = None
        self.train_set: Rows | None = None
        self.val_set: Rows | None = None

    # -- shape and slicing ------------------------------------------------------------------------

    def _check_dims(self, dims, source: str = "data.slice_dims") -> list[int]:
        dims = [int(d) for d in dims]
        size = self.input_shape[1]
        bad = [d for d in dims if not 0 <= d < size]
        if bad or len(set(dims)) != len(dims) or not dims:
            raise ConfigError(
                f"{source}: expected distinct indices in [0, {size}), got {len(dims)} entries, out of range {bad[:5]}"
            )
        return dims

    @property
    def slice_dims(self) -> list[int] | None:
        if self._slice_dims is None and self._slice_source is not None:
            path = Path(self._slice_source)
            if not path.is_file():
                raise MissingFileError(f"slice_dims file not found: {path} (data.slice_dims: a pickled index list)")
            with open(path, "rb") as f:
                dims = pickle.load(f)
            self._slice_dims = self._check_dims(np.asarray(dims).ravel(), f"slice_dims file {path}")
        return self._slice_dims

    @property
    def sample_shape(self) -> tuple[int, int]:
        dims = self.slice_dims
        return (self.seq_len, len(dims) if dims is not None else self.input_shape[1])

    # -- reading ----------------------------------------------------------------------------------

    def read_split(self, split: str, sliced: bool = True) -> np.ndarray:
        """One split's records, frames (and with ``sliced`` dims) selected, not normalized.

        ``[N, *sample_shape]``, or ``[N, frames, input dims]`` when ``sliced`` is false.
        """
        files = sorted(self.dir.glob(f"{split}-*.tfrecord"))
        if not files:
            raise MissingFileError(f"data.dir={self.dir}: no {split}-*.tfrecord files in {self.dir.resolve()}")
        dims = self.slice_dims if sliced else None
        chunks, count = [], 0
        for path in files:
            x = read_latents(path, self.input_shape)[:, : self.seq_len]
            if dims is not None:
                x = x[..., dims]
            if self.limit is not None:
                x = x[: self.limit - count]
            chunks.append(x)
            count += len(x)
            if self.limit is not None and count >= self.limit:
                break
        data = np.concatenate(chunks)
        if len(data) == 0:
            raise RecordError(f"{split} split in {self.dir} has no records ({len(files)} files)")
        return data

    def setup(self, stage: str | None = None) -> None:
        train = None
        if self.space is None:  # statistics come from the train split
            train = self.read_split("train")
            data_min, data_max = float(train.min()), float(train.max())
            if self.normalize != "none" and data_max <= data_min:
                raise RecordError(f"train split in {self.dir} is constant ({data_min}); cannot normalize")
            moments = {}
            if self.normalize == "standard":
                moments = {
                    "data_mean": float(train.mean(dtype=np.float64)),
                    "data_std": float(train.std(dtype=np.float64)),
                }
            elif self.normalize == "centered":  # a mean per kept dim, one scale for all
                mean = train.mean(axis=(0, 1), dtype=np.float64)
                moments = {"data_mean": mean.tolist(), "data_std": float((train - mean).std(dtype=np.float64))}
            self.space = LatentSpace(
                self.input_shape[1], self.seq_len, self.slice_dims, data_min, data_max, self.normalize, **moments
            )
        if stage in (None, "fit") and self.train_set is None:
            train = self.read_split("train") if train is None else train
            self.train_set = Rows(torch.from_numpy(self.space.scale(train)))
        if self.val_set is None:
            self.val_set = Rows(torch.from_numpy(self.space.scale(self.read_split("eval"))))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = UnrepeatedSampler(self.val_set, world, self.trainer.global_rank) if world > 1 else None
        return DataLoader(self.val_set, self.batch_size, sampler=sampler, num_workers=self.num_workers)
