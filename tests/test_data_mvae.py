import pickle
import struct

import numpy as np
import pytest
import torch

from ddpm.codecs.latents import LatentCodec
from ddpm.data.mvae import LatentDataModule, UnrepeatedSampler
from ddpm.errors import ConfigError
from ddpm.io.tfrecords import RecordError, read_latents, write_latents

SHAPE = (8, 16)


def make_shards(root, n_train=(5, 4, 3), n_eval=(3, 2), shape=SHAPE, seed=0):
    """Several shards per split with distinct, recognisable latents; returns (train, eval) arrays."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, counts in (("train", n_train), ("eval", n_eval)):
        chunks = []
        for i, n in enumerate(counts):
            x = rng.normal(0, 2, (n, *shape)).astype(np.float32)
            write_latents(root / f"{split}-{i:05d}-of-{len(counts):05d}.tfrecord", x)
            chunks.append(x)
        out[split] = np.concatenate(chunks)
    return out["train"], out["eval"]


def write_shards(root, train, evals=None):
    """One shard per split holding exactly these latents (the eval split: ``train`` again unless given)."""
    write_latents(root / "train-0.tfrecord", np.asarray(train, np.float32))
    write_latents(root / "eval-0.tfrecord", np.asarray(train if evals is None else evals, np.float32))


def test_records_read_back_exactly(tmp_path):
    train, evals = make_shards(tmp_path)
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, normalize=False)
    assert np.array_equal(dm.read_split("train"), train) and np.array_equal(dm.read_split("eval"), evals)


def test_limit_per_split(tmp_path):
    train, evals = make_shards(tmp_path)
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, normalize=False, limit=7)
    assert np.array_equal(dm.read_split("train"), train[:7])
    assert np.array_equal(dm.read_split("eval"), evals)  # only 5 there


def test_normalization_uses_train_statistics_and_inverts(tmp_path):
    train, evals = make_shards(tmp_path)
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, normalize=True)
    dm.setup("fit")
    assert (dm.space.data_min, dm.space.data_max) == (float(train.min()), float(train.max()))
    x_train = dm.train_set.tensors[0]
    assert x_train.min().item() == -1.0 and x_train.max().item() == pytest.approx(1.0)
    x_eval = dm.val_set.tensors[0].numpy()
    expected = (evals - train.min()) / (train.max() - train.min()) * 2 - 1
    assert np.allclose(x_eval, expected, atol=1e-6)
    codec = LatentCodec()
    codec.fit(dm)
    assert np.allclose(codec.decode(torch.from_numpy(x_eval)), evals, atol=1e-5)


def test_standard_normalization_gives_unit_variance_and_inverts(tmp_path):
    """``standard``: the train split's scalar mean and std map it to mean 0, variance 1 (the data have
    mean 0, std 2 here); the codec inverts it and keeps the mode across a state round trip."""
    train, evals = make_shards(tmp_path)
    train = train + 5.0  # an offset the mean must remove
    write_latents(tmp_path / "train-00000-of-00001.tfrecord", train)
    for stale in tmp_path.glob("train-*-of-00003.tfrecord"):
        stale.unlink()
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, normalize="standard")
    dm.setup("fit")
    x_train = dm.train_set.tensors[0].double()
    assert abs(x_train.mean().item()) < 1e-5 and x_train.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    expected = (evals - train.mean(dtype=np.float64)) / train.std(dtype=np.float64)
    assert np.allclose(dm.val_set.tensors[0].numpy(), expected, atol=1e-5)
    codec = LatentCodec()
    codec.fit(dm)
    fresh = LatentCodec()
    fresh.load_state_dict(codec.state_dict())
    assert fresh.space.normalize == "standard"
    assert np.allclose(fresh.decode(dm.val_set.tensors[0]), evals, atol=1e-4)


def test_centered_normalization_removes_each_dims_mean_and_keeps_their_relative_spread(tmp_path):
    """``centered``: each kept dim's train mean is removed and one scale maps the train split to
    variance 1, so every dim has mean 0 (what x_T ~ N(0, I) assumes) while the dims keep the ratios of
    their standard deviations; the codec inverts it, also after a state round trip through torch.save."""
    rng = np.random.default_rng(3)
    offsets, scales = rng.normal(0, 3, SHAPE[1]), rng.uniform(0.3, 2.0, SHAPE[1])
    train = (rng.normal(0, 1, (40, *SHAPE)) * scales + offsets).astype(np.float32)
    evals = (rng.normal(0, 1, (6, *SHAPE)) * scales + offsets).astype(np.float32)
    write_latents(tmp_path / "train-00000-of-00001.tfrecord", train)
    write_latents(tmp_path / "eval-00000-of-00001.tfrecord", evals)
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, normalize="centered")
    dm.setup("fit")
    x_train = dm.train_set.tensors[0].double().numpy()
    assert np.abs(x_train.mean(axis=(0, 1))).max() < 1e-5  # every dim, not only the pooled mean
    assert x_train.std() == pytest.approx(1.0, abs=1e-5)
    raw_std = train.astype(np.float64).std(axis=(0, 1))
    assert np.allclose(x_train.std(axis=(0, 1)) / raw_std, 1 / dm.space.data_std, rtol=1e-4)
    mean = train.mean(axis=(0, 1), dtype=np.float64)
    expected = (evals - mean) / (train - mean).std(dtype=np.float64)
    assert np.allclose(dm.val_set.tensors[0].numpy(), expected, atol=1e-5)
    codec = LatentCodec()
    codec.fit(dm)
    torch.save(codec.state_dict(), tmp_path / "codec.pt")
    fresh = LatentCodec()
    fresh.load_state_dict(torch.load(tmp_path / "codec.pt", weights_only=True))
    assert fresh.space.normalize == "centered" and len(fresh.space.data_mean) == SHAPE[1]
    assert np.allclose(fresh.decode(dm.val_set.tensors[0]), evals, atol=1e-4)
    state = codec.state_dict()
    state["space"]["data_mean"] = state["space"]["data_mean"][:-1]  # a damaged checkpoint
    with pytest.raises(ValueError, match=f"data_mean holds {SHAPE[1] - 1} means for {SHAPE[1]} kept dimensions"):
        LatentCodec().load_state_dict(state)


@pytest.mark.parametrize("value, mode", [(True, "minmax"), (False, "none"), ("minmax", "minmax"), ("none", "none")])
def test_normalize_accepts_the_old_booleans(tmp_path, value, mode):
    train, _ = make_shards(tmp_path)
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, normalize=value)
    dm.setup("fit")
    x = dm.train_set.tensors[0]
    assert dm.space.normalize == mode
    assert (x.min().item(), x.max().item()) == (
        (-1.0, pytest.approx(1.0)) if mode == "minmax" else (train.min(), train.max())
    )


def test_bad_normalize_is_a_config_error():
    with pytest.raises(ConfigError, match="normalize='zscore'.*minmax, standard, centered, none"):
        LatentDataModule("x", input_shape=SHAPE, normalize="zscore")


def test_slice_keeps_dims_and_reinflation_puts_them_back(tmp_path):
    train, _ = make_shards(tmp_path)
    keep = [3, 0, 11, 7]
    with open(tmp_path / "slice.pkl", "wb") as f:
        pickle.dump(keep, f)
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, slice_dims=str(tmp_path / "slice.pkl"), seq_len=6)
    assert dm.sample_shape == (6, 4)
    dm.setup("fit")
    model_space = dm.train_set.tensors[0]
    assert model_space.shape == (len(train), 6, 4)
    codec = LatentCodec()
    codec.fit(dm)
    full = codec.decode(model_space)
    assert full.shape == (len(train), 6, 16)
    assert np.allclose(full[..., keep], train[:, :6, keep], atol=1e-5)
    dropped = np.setdiff1d(np.arange(16), keep)
    assert not np.allclose(full[..., dropped], train[:, :6, dropped], atol=0.1)
    assert abs(full[..., dropped].std() - 1.0) < 0.15  # standard normal fill, as Mittal et al.


def test_codec_state_round_trip_restores_inverse(tmp_path):
    make_shards(tmp_path)
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, slice_dims=[1, 2])
    codec = LatentCodec()
    codec.fit(dm)  # sets the data up: the statistics come from the train split
    fresh = LatentCodec()
    fresh.load_state_dict(codec.state_dict())
    x = torch.rand(3, 8, 2) * 2 - 1
    assert np.array_equal(fresh.decode(x), codec.decode(x)) and fresh.sample_shape == (8, 2)
    torch.testing.assert_close(fresh.to_model(fresh.decode(x)), x)


def test_exact_record_counts_with_two_workers(tmp_path):
    train, evals = make_shards(tmp_path, n_train=(13, 8, 9))
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, normalize=False, batch_size=4, num_workers=2)
    dm.setup("fit")
    seen = torch.cat(list(dm.train_dataloader()))
    assert len(seen) == len(train)
    assert np.array_equal(np.sort(seen.numpy().reshape(len(seen), -1), 0), np.sort(train.reshape(len(train), -1), 0))
    assert len(torch.cat(list(dm.val_dataloader()))) == len(evals)


def test_unrepeated_sampler_covers_each_eval_record_once():
    data = list(range(11))
    parts = [list(UnrepeatedSampler(data, 2, r)) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == data


def test_wrong_input_shape_names_file_and_record(tmp_path):
    write_latents(tmp_path / "train-0.tfrecord", np.zeros((2, 8, 16), np.float32))
    write_latents(tmp_path / "train-1.tfrecord", np.zeros((1, 8, 12), np.float32))
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE)
    with pytest.raises(RecordError, match=r"train-1\.tfrecord, record 0: input_shape \[8, 12\] disagrees .* \[8, 16\]"):
        dm.read_split("train")


def test_truncated_and_corrupt_records(tmp_path):
    path = tmp_path / "train-0.tfrecord"
    write_latents(path, np.ones((3, 8, 16), np.float32))
    blob = path.read_bytes()
    path.write_bytes(blob[:-10])
    with pytest.raises(RecordError, match=r"train-0\.tfrecord, record 2 .*truncated"):
        read_latents(path, SHAPE)
    corrupt = bytearray(blob)
    record_len = len(blob) // 3
    corrupt[record_len + 40] ^= 0xFF  # flip a byte inside record 1's data
    path.write_bytes(bytes(corrupt))
    with pytest.raises(RecordError, match=r"record 1 .*data checksum mismatch"):
        read_latents(path, SHAPE)
    path.write_bytes(blob[:-2])  # the last record's data whole, its checksum cut
    with pytest.raises(RecordError, match=r"record 2 .*truncated: \d+ bytes of data expected"):
        read_latents(path, SHAPE)
    path.write_bytes(blob[:10])  # not even a whole header
    with pytest.raises(RecordError, match=r"record 0 .*truncated header \(10 of 12 bytes\)"):
        read_latents(path, SHAPE)
    bad_len = bytearray(blob)
    bad_len[0:8] = struct.pack("<Q", 5)
    path.write_bytes(bytes(bad_len))
    with pytest.raises(RecordError, match=r"record 0 .*length checksum"):
        read_latents(path, SHAPE)


def test_empty_split_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no train-\*\.tfrecord files in .*"):
        LatentDataModule(str(tmp_path), input_shape=SHAPE).read_split("train")
    write_latents(tmp_path / "eval-0.tfrecord", np.zeros((0, 8, 16), np.float32))
    with pytest.raises(RecordError, match="eval split .* has no records"):
        LatentDataModule(str(tmp_path), input_shape=SHAPE).read_split("eval")


def test_bad_slice_dims_and_seq_len():
    with pytest.raises(ValueError, match="slice_dims"):
        LatentDataModule(input_shape=SHAPE, slice_dims=[0, 16])
    with pytest.raises(FileNotFoundError, match="slice_dims file not found"):
        _ = LatentDataModule(input_shape=SHAPE, slice_dims="/no/such.pkl").sample_shape  # read lazily
    with pytest.raises(ValueError, match="seq_len"):
        LatentDataModule(input_shape=SHAPE, seq_len=9)


def test_write_samples_npz_and_mittal_pickle(tmp_path):
    from ddpm.latent_space import LatentSpace

    codec = LatentCodec()
    codec.space = LatentSpace(dim=16, seq_len=8, dims=[0, 5], data_min=-3.0, data_max=5.0)
    files = codec.write(torch.zeros(2, 8, 2), tmp_path, "generated")
    samples = np.load(files["npz"])["samples"]
    with open(files["pkl"], "rb") as f:
        pickled = pickle.load(f)
    assert samples.shape == (2, 8, 16) and np.array_equal(pickled, samples)
    assert np.allclose(samples[..., [0, 5]], 1.0)  # model 0 -> midpoint of [-3, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated.npz", "generated.pkl"]  # no temporaries


# Session 29's mutation audit.


def test_unrepeated_sampler_length_is_what_it_yields():
    """DataLoader and Lightning size the eval epoch by ``len(sampler)``: it must count rank r's own indices."""
    data = list(range(11))
    samplers = [UnrepeatedSampler(data, 3, r) for r in range(3)]
    assert [list(s) for s in samplers] == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert [len(s) for s in samplers] == [4, 4, 3]


def test_latent_data_refuses_repeated_dims_and_a_constant_train_split_and_takes_every_frame(tmp_path):
    with pytest.raises(ConfigError, match=r"slice_dims: expected distinct indices in \[0, 4\), got 3 entries"):
        LatentDataModule(str(tmp_path), input_shape=(6, 4), slice_dims=[1, 2, 1])
    assert LatentDataModule(str(tmp_path), input_shape=(6, 4), seq_len=6).sample_shape == (6, 4)  # all frames
    write_shards(tmp_path, np.full((3, 6, 4), 0.5))
    with pytest.raises(RecordError, match=r"is constant \(0.5\); cannot normalize"):
        LatentDataModule(str(tmp_path), input_shape=(6, 4)).setup("fit")
    plain = LatentDataModule(str(tmp_path), input_shape=(6, 4), normalize="none")
    plain.setup("fit")  # nothing to divide by: accepted
    assert plain.train_set.tensors[0].unique().tolist() == [0.5]


def test_latent_train_loader_shuffles_and_the_limit_stops_at_the_first_shard(tmp_path):
    train = np.arange(16, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)  # record i: all i
    write_shards(tmp_path, train)
    dm = LatentDataModule(str(tmp_path), input_shape=(2, 3), normalize="none", batch_size=16)
    dm.setup("fit")
    torch.manual_seed(0)
    order = next(iter(dm.train_dataloader()))[:, 0, 0].tolist()
    assert sorted(order) == list(range(16)) and order != list(range(16))
    (tmp_path / "train-1.tfrecord").write_bytes(b"not read: past the limit")
    limited = LatentDataModule(str(tmp_path), input_shape=(2, 3), normalize="none", limit=16)
    assert np.array_equal(limited.read_split("train"), train)


@pytest.mark.parametrize("normalize", ["minmax", "standard", "centered", "none"])
def test_bound_is_the_box_that_holds_the_train_split(tmp_path, normalize):
    """``clip_x_start=true`` clips latents to ``space.bound``: every train latent lies inside it, and it is the
    scalar min / max scaled as each dim is (tight but for ``centered``, whose dims have their own means)."""
    rng = np.random.default_rng(4)
    offsets, scales = rng.normal(0, 3, SHAPE[1]), rng.uniform(0.3, 2.0, SHAPE[1])
    train = (rng.normal(0, 1, (40, *SHAPE)) * scales + offsets).astype(np.float32)
    write_shards(tmp_path, train)
    dm = LatentDataModule(str(tmp_path), input_shape=SHAPE, normalize=normalize)
    dm.setup("fit")
    x = dm.train_set.tensors[0].abs().max().item()
    lo, hi = float(train.min()), float(train.max())
    ends = np.array([lo, hi], np.float64)
    expected = {
        "minmax": 1.0,
        "standard": np.abs(ends - train.mean(dtype=np.float64)).max() / train.std(dtype=np.float64),
        "centered": np.abs(ends[:, None] - train.mean(axis=(0, 1), dtype=np.float64)).max() / dm.space.data_std,
        "none": max(-lo, hi),
    }[normalize]
    assert dm.space.bound == pytest.approx(expected, rel=1e-5)
    assert x <= dm.space.bound * (1 + 1e-6)
    if normalize == "centered":  # the dims' own means: looser than the data, by the offsets' spread
        assert x < 0.9 * dm.space.bound
    else:
        assert x == pytest.approx(dm.space.bound, rel=1e-5)
    codec = LatentCodec()
    codec.fit(dm)
    assert codec.clip_value == dm.space.bound
