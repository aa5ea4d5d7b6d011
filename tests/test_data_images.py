import struct

import numpy as np
import pytest
import torch

from ddpm.data.images import MNIST_FILES, DigitsDataModule, MNISTDataModule


def write_idx(path, array: np.ndarray) -> None:
    """IDX format: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian int32 dims, raw bytes."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 3)):
        images = rng.integers(0, 256, (n, 28, 28))
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return tmp_path


def test_mnist_reads_idx_files_scaled_to_unit_interval(mnist_root):
    dm = MNISTDataModule(root=str(mnist_root), batch_size=3)
    dm.setup("fit")
    assert len(dm.train_set) == 6 and len(dm.val_set) == 3
    batch = next(iter(dm.val_dataloader()))
    assert batch.shape == (3, 1, 28, 28)
    assert batch[0, 0, 0, 0].item() == -1.0 and batch[0, 0, 0, 1].item() == 1.0
    assert batch.min() >= -1 and batch.max() <= 1


def test_mnist_missing_files_error_names_directory_and_files(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str((tmp_path / "nowhere" / "MNIST" / "raw").resolve()) in message
    assert all(name in message for name in MNIST_FILES)


def test_digits_split_range_and_write_samples(tmp_path):
    dm = DigitsDataModule(batch_size=32, val_fraction=0.2)
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 1797 and len(dm.val_set) == 360
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (32, 1, 8, 8) and batch.min() == -1 and batch.max() == 1
    x = torch.linspace(-1, 1, 4 * 64).reshape(4, 1, 8, 8)
    from ddpm.codecs.images import ImageCodec

    codec = ImageCodec()
    codec.fit(dm)
    assert codec.sample_shape == (1, 8, 8) and codec.bounded
    files = codec.write(x, tmp_path, "s")
    saved = np.load(files["npz"])["samples"]
    assert np.allclose(saved, (x.numpy() + 1) / 2) and files["png"].stat().st_size > 0


def test_digits_split_follows_its_seed_and_fraction_and_keeps_the_label_shares():
    from ddpm.data.images import DigitsDataModule, load_digits_split

    _, val0, train_y, y0 = load_digits_split(0.2, seed=0)
    _, val0b, _, _ = load_digits_split(0.2, seed=0)
    _, val1, _, _ = load_digits_split(0.2, seed=1)
    assert np.array_equal(val0, val0b) and not np.array_equal(val0, val1)
    total = np.bincount(train_y) + np.bincount(y0)
    assert np.abs(np.bincount(y0) - 0.2 * total).max() < 1  # stratified: 20% of each digit, to the digit
    dm = DigitsDataModule(val_fraction=0.5, seed=3)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (898, 899)
    torch.manual_seed(0)
    batch = next(iter(dm.train_dataloader()))
    assert not torch.equal(batch, dm.train_set.tensors[0][:128])  # shuffled
