"""Codecs: the sampling callback and ``sample.py`` write the same files through the run's codec;
sampling needs only the checkpoint (and the MusicVAE), not the training data; the layers import
one way."""

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from ddpm.callbacks.sampling import SampleCallback
from ddpm.errors import UserError
from ddpm.sampling import load_checkpoint, restore, sample
from tests.helpers import sample_cfg

PACKAGE = Path(__file__).resolve().parents[1] / "ddpm"


def test_callback_and_sample_py_write_the_same_files(melody_run, tmp_path):
    _, run = melody_run
    module, _ = restore(load_checkpoint(run / "last.ckpt"), run / "last.ckpt")
    trainer = type("Trainer", (), {"loggers": [], "current_epoch": 0})()
    cfg = sample_cfg([f"ckpt={run / 'last.ckpt'}", "n=3", "seed=5", f"out_dir={tmp_path / 'cli'}"])
    SampleCallback(str(tmp_path / "callback"), n=3, seed=5, sampler=instantiate(cfg.sampler)).draw(
        trainer, module, "epoch_000"
    )
    sample(cfg)
    names = lambda d, prefix: sorted(p.name.replace(prefix, "X") for p in d.iterdir() if p.suffix != ".json")  # noqa: E731
    assert names(tmp_path / "callback", "epoch_000") == names(tmp_path / "cli", "generated")
    assert len(names(tmp_path / "cli", "generated")) == 2 + 3 + 2 + 1  # npz, pkl, 3 MIDI, 2 WAV, piano roll
    one = np.load(tmp_path / "callback" / "epoch_000.npz")["samples"]
    two = np.load(tmp_path / "cli" / "generated.npz")["samples"]
    np.testing.assert_array_equal(one, two)  # the same draws, decoded with the same seed
    for i in range(3):
        a, b = (tmp_path / "callback" / f"epoch_000_{i:03d}.mid"), (tmp_path / "cli" / f"generated_{i:03d}.mid")
        assert a.read_bytes() == b.read_bytes()


def test_sample_py_sets_the_decoding_temperature_and_how_many_to_render(melody_run, tmp_path):
    """``temperature=`` and ``render_n=`` override the run's codec: the same latents, other notes, and
    WAVs for as many samples as asked (the run renders 2; 0: no WAV and no piano roll)."""
    _, run = melody_run
    greedy = sample(sample_cfg([f"ckpt={run / 'last.ckpt'}", "n=4", "seed=1", f"out_dir={tmp_path / 'g'}"]))
    hot = sample(
        sample_cfg(
            [f"ckpt={run / 'last.ckpt'}", "n=4", "seed=1", "temperature=1.0", "render_n=3", f"out_dir={tmp_path / 'h'}"]
        )
    )
    np.testing.assert_array_equal(np.load(greedy["npz"])["samples"], np.load(hot["npz"])["samples"])
    assert len(list((tmp_path / "g").glob("*.wav"))) == 2 and len(list((tmp_path / "h").glob("*.wav"))) == 3
    midi = lambda d: [(d / f"generated_{i:03d}.mid").read_bytes() for i in range(4)]  # noqa: E731
    assert midi(tmp_path / "g") != midi(tmp_path / "h")
    assert json.loads(hot["record"].read_text())["temperature"] == 1.0
    none = sample(sample_cfg([f"ckpt={run / 'last.ckpt'}", "n=2", "render_n=0", f"out_dir={tmp_path / 'n'}"]))
    assert sorted(p.name for p in (tmp_path / "n").iterdir() if p.suffix in (".wav", ".png")) == []  # 0: none
    assert none["mid_001"].is_file() and "png" not in none


def test_tensorboard_log_draws_render_n_melodies_and_none_with_0(melody_run):
    """The per-epoch TensorBoard log: a piano roll of the first ``render_n`` samples and the first one's audio;
    ``render_n=0`` logs nothing (it failed on an empty figure)."""
    _, run = melody_run
    _, codec = restore(load_checkpoint(run / "last.ckpt"), run / "last.ckpt")
    x = torch.randn(3, *codec.sample_shape, generator=torch.Generator().manual_seed(0))

    class Writer:
        def __init__(self):
            self.calls = []

        def add_figure(self, tag, fig, step):
            self.calls.append((tag, len(fig.axes), step))

        def add_audio(self, tag, audio, step, sample_rate):
            self.calls.append((tag, audio.shape[0], step))

    for render_n, expected in ((2, [("samples/piano_roll", 2, 7), ("samples/audio", 1, 7)]), (0, [])):
        codec.render_n, writer = render_n, Writer()
        codec.log(x, writer, 7)
        assert writer.calls == expected


def test_sample_py_needs_no_corpus_or_latent_folder(melody_run, tmp_path):
    """A copy of the chain whose corpus cache and latent folder are deleted: sampling and MIDI infilling
    work; infilling eval sequences names the missing folder."""
    root, run = melody_run
    copy = tmp_path / "chain"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("tensorboard"))
    ckpt = torch.load(copy / "run" / "last.ckpt", weights_only=True)
    text = repr(ckpt["run_config"])  # every path of the chain, moved into the copy
    ckpt["run_config"] = eval(text.replace(str(root), str(copy)))  # noqa: S307 - our own repr of plain types
    torch.save(ckpt, copy / "run" / "last.ckpt")
    shutil.rmtree(copy / "cache")
    shutil.rmtree(copy / "latents")
    files = sample(sample_cfg([f"ckpt={copy / 'run' / 'last.ckpt'}", "n=2", f"out_dir={tmp_path / 'out'}"]))
    assert files["npz"].is_file() and files["mid_001"].is_file()
    song = next((copy / "midi").glob("*.mid"))
    cfg = [f"ckpt={copy / 'run' / 'last.ckpt'}", "n=2", "infill=[1,3]", f"out_dir={tmp_path / 'midi'}"]
    assert sample(sample_cfg([*cfg, f"infill_midi={song}"]))["original_mid_000"].is_file()
    with pytest.raises(UserError, match="eval sequences are gone.*latents"):
        sample(sample_cfg(cfg))


def downgrade(ckpt: dict) -> dict:
    """The checkpoint as train.py wrote it before codecs: the decoding settings and statistics in the data."""
    cfg = ckpt["run_config"]
    prepare, codec, space = cfg["prepare"], cfg["codec"], ckpt["codec"]["space"]
    data = {"_target_": "ddpm.data.melody.MelodyDataModule", "dir": prepare["out_dir"], "musicvae": codec["musicvae"]}
    data |= {"corpus": prepare["corpus"], "vae": prepare["musicvae"], "frames": prepare["frames"]}
    data |= {k: codec[k] for k in ("temperature", "render_n", "qpm", "seed")} | {"batch_size": 4, "normalize": True}
    old = {k: v for k, v in ckpt.items() if k != "codec"}
    old["run_config"] = {k: v for k, v in cfg.items() if k not in ("prepare", "codec")} | {"data": data}
    low, high = space["data_min"], space["data_max"]
    if space["normalize"] == "standard":  # the same affine map, as an old checkpoint's min and max
        low, high = space["data_mean"] - space["data_std"], space["data_mean"] + space["data_std"]
    old["MelodyDataModule"] = {"data_min": low, "data_max": high, "slice_dims": space["dims"]}
    return old


def test_checkpoints_from_before_codecs_sample_the_same(melody_run, tmp_path):
    _, run = melody_run
    ckpt = load_checkpoint(run / "last.ckpt")
    space = ckpt["codec"]["space"]
    if space["normalize"] == "centered":  # a mean per dim, which the pre-codec format cannot hold: one scalar
        space["normalize"], space["data_mean"] = "standard", float(np.mean(space["data_mean"]))
    module, codec = restore(ckpt)
    torch.save(downgrade(ckpt), tmp_path / "old.ckpt")
    old = load_checkpoint(tmp_path / "old.ckpt")  # read as today's: its data config is a LatentDataModule's
    assert old["run_config"]["data"]["_target_"] == "ddpm.data.mvae.LatentDataModule" and "codec" in old
    old_module, old_codec = restore(old)
    assert type(old_codec) is type(codec) and old_codec.space.dims == codec.space.dims
    z = np.random.default_rng(0).normal(size=(3, *codec.sample_shape))
    np.testing.assert_allclose(old_codec.space.unscale(z), codec.space.unscale(z), rtol=1e-5, atol=1e-5)
    assert old_codec.musicvae_path == codec.musicvae_path
    draw = lambda m: m.sample(2, torch.Generator().manual_seed(0))  # noqa: E731
    x = draw(module)
    torch.testing.assert_close(draw(old_module), x, rtol=0, atol=0)
    np.testing.assert_array_equal(old_codec.melodies(x), codec.melodies(x))


def imports(path: Path) -> set[str]:
    """The ``ddpm.*`` modules a file imports (at any depth, lazily or not)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("ddpm")}


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("io", ("ddpm.data", "ddpm.music", "ddpm.codecs", "ddpm.module", "ddpm.training", "ddpm.sampling")),
        ("music", ("ddpm.data", "ddpm.codecs", "ddpm.module", "ddpm.training", "ddpm.sampling", "ddpm.studio")),
        ("data", ("ddpm.music", "ddpm.codecs", "ddpm.module", "ddpm.training", "ddpm.sampling", "ddpm.studio")),
        ("codecs", ("ddpm.data", "ddpm.module", "ddpm.training", "ddpm.sampling", "ddpm.studio")),
    ],
)
def test_layers_import_one_way(package, forbidden):
    """prepare (music) -> data -> module -> codec -> files: no layer reaches up or sideways."""
    files = sorted((PACKAGE / package).glob("*.py"))
    assert files
    bad = {f.name: sorted(n for n in imports(f) if n.startswith(forbidden)) for f in files}
    assert not {k: v for k, v in bad.items() if v}


def test_the_musicvae_is_found_from_any_working_directory(tmp_path, monkeypatch):
    """A checkpoint names its MusicVAE relative to the project (``checkpoints/musicvae.pt``): run from
    another folder, restore finds it there, a copy in the working directory wins, and a MusicVAE that is
    in neither place is refused before any sampling."""
    from ddpm.checkpoint_io import CheckpointError
    from ddpm.errors import MissingFileError
    from ddpm.music.vae_io import PROJECT_DIR, musicvae_file

    shipped = PACKAGE.parent / "checkpoints" / "melody.ckpt"
    monkeypatch.chdir(tmp_path)
    assert PROJECT_DIR == PACKAGE.parent
    assert musicvae_file("checkpoints/musicvae.pt") == PACKAGE.parent / "checkpoints" / "musicvae.pt"
    _, codec = restore(load_checkpoint(shipped), shipped)
    assert codec.musicvae.z_dim == 512
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(PACKAGE.parent / "checkpoints" / "musicvae.pt", tmp_path / "checkpoints" / "musicvae.pt")
    assert musicvae_file("checkpoints/musicvae.pt") == Path("checkpoints/musicvae.pt")
    assert musicvae_file("nowhere/vae.pt") == Path("nowhere/vae.pt")
    ckpt = load_checkpoint(shipped)
    ckpt["run_config"]["codec"]["musicvae"] = "nowhere/vae.pt"
    with pytest.raises(MissingFileError, match="codec.musicvae=nowhere/vae.pt: no such MusicVAE in"):
        restore(ckpt, shipped)
    (tmp_path / "song.mid").write_bytes(b"MThd: a MIDI file, not a MusicVAE")
    ckpt["run_config"]["codec"]["musicvae"] = "song.mid"
    with pytest.raises(CheckpointError, match="song.mid is not a readable MusicVAE file"):
        restore(ckpt, shipped)  # refused when restored, before any sampling


# The codecs' own rules (session 29's mutation audit).


def test_image_codec_clamps_to_the_unit_interval_and_grids_in_a_square():
    from ddpm.codecs.images import ImageCodec

    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0]).reshape(1, 1, 2, 3)  # a sampler may overshoot [-1, 1]
    assert ImageCodec((1, 2, 3)).decode(x).ravel().tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
    grid = ImageCodec((1, 8, 8)).grid(torch.zeros(4, 1, 8, 8))
    assert tuple(grid.shape) == (3, 19, 19)  # 2 x 2 images of 8 + 1 pixel of padding, and 1 more


def _space(dims=(0, 2), dim=5, frames=3):
    from ddpm.latent_space import LatentSpace

    return LatentSpace(dim=dim, seq_len=frames, dims=list(dims), data_min=-1.0, data_max=3.0)


def test_latent_codec_refills_dropped_dims_from_the_seed_it_is_given():
    from ddpm.codecs.latents import LatentCodec

    codec = LatentCodec(seed=7)
    codec.space = _space()
    x = torch.zeros(2, 3, 2)
    dropped = [1, 3, 4]
    seven, one, two = codec.decode(x), codec.decode(x, seed=1), codec.decode(x, seed=2)
    assert np.array_equal(seven, codec.decode(x, seed=7))  # no seed: the codec's own
    assert np.array_equal(one, codec.decode(x, seed=1))
    assert not np.allclose(one[..., dropped], two[..., dropped]) and not np.allclose(
        one[..., dropped], seven[..., dropped]
    )
    assert np.array_equal(one[..., [0, 2]], two[..., [0, 2]]) and np.all(
        one[..., [0, 2]] == 1.0
    )  # kept: 0 is [-1, 3]'s midpoint


def test_latent_codec_fits_its_period_prior_on_the_train_split(tmp_path):
    """Every train sequence loops every 2 frames, no eval sequence loops: the prior is all on period 2."""
    from ddpm.codecs.latents import LatentCodec
    from ddpm.data.mvae import LatentDataModule
    from ddpm.io.tfrecords import write_latents

    rng = np.random.default_rng(0)
    looped = np.tile(rng.normal(size=(6, 2, 4)), (1, 3, 1)).astype(np.float32)  # frames 0 1 0 1 0 1
    write_latents(tmp_path / "train-0.tfrecord", looped)
    write_latents(tmp_path / "eval-0.tfrecord", rng.normal(size=(3, 6, 4)).astype(np.float32))
    codec = LatentCodec()
    codec.fit(LatentDataModule(str(tmp_path), input_shape=(6, 4)))
    assert codec.periods.probs.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]


def _fake_decoder(latents, *_, **__):
    """A stand-in MusicVAE decoder: a pitch per window from the latents' sum, at each window's first step."""
    n, frames, _ = latents.shape
    events = np.zeros((n, frames, 32), dtype=np.int64)
    events[..., 0] = np.round(np.abs(latents).sum(-1) * 1000).astype(np.int64) % 80 + 2
    return events.reshape(n, frames * 32)


@pytest.fixture
def melody_codec(monkeypatch, tmp_path):
    import ddpm.codecs.melodies as melodies
    import ddpm.music.vae_io as vae_io
    from ddpm.codecs.melodies import MelodyCodec

    monkeypatch.setattr(vae_io, "decode_latents", lambda model, latents, *a, **k: _fake_decoder(latents))
    written, real = [], melodies.write_midi
    monkeypatch.setattr(
        melodies, "write_midi", lambda events, path, qpm: written.append(events) or real(events, path, qpm=qpm)
    )
    codec = MelodyCodec(str(tmp_path / "unused.pt"), render_n=0)
    codec._musicvae = object()  # never loaded: the decoder is the stand-in
    codec.space = _space()
    return codec, written


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"qpm": 0}, "codec.qpm=0.0: expected a positive tempo"),
        ({"qpm": float("inf")}, "codec.qpm=inf: expected a positive tempo"),
        ({"temperature": -3}, r"codec.temperature=-3.0: expected a number in \[0, 2\]"),
        ({"render_n": -1}, "codec.render_n=-1: expected a count >= 0"),
    ],
)
def test_melody_codec_refuses_settings_a_checkpoint_could_carry(setting, message):
    """A checkpoint's run_config builds the codec without the command line's checks: the codec checks."""
    from ddpm.codecs.melodies import MelodyCodec
    from ddpm.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        MelodyCodec("unused.pt", **setting)


def test_melody_codec_writes_the_latents_it_is_given(melody_codec, tmp_path):
    """Infilling writes the kept frames' original latents: their MIDI is decoded from them, not from ``x``."""
    codec, written = melody_codec
    x = torch.zeros(2, 3, 2)
    latents = np.random.default_rng(1).normal(size=(2, 3, 5)).astype(np.float32)
    files = codec.write(x, tmp_path, "g", seed=3, latents=latents)
    assert np.array_equal(np.load(files["npz"])["samples"], latents)
    assert len(written) == 2 and np.array_equal(np.stack(written), _fake_decoder(latents))
    written.clear()
    codec.write(x, tmp_path, "h", seed=3)
    assert np.array_equal(np.stack(written), _fake_decoder(codec.decode(x, 3)))


def test_melody_codec_decodes_again_for_another_seed(melody_codec):
    codec, _ = melody_codec
    x = torch.zeros(2, 3, 2)
    one, two = codec.melodies(x, 1), codec.melodies(x, 2)
    assert np.array_equal(one, _fake_decoder(codec.decode(x, 1))) and np.array_equal(
        two, _fake_decoder(codec.decode(x, 2))
    )
    assert not np.array_equal(one, two)
    assert codec.melodies(x, 2) is two  # the same samples and seed: decoded once
