"""The melody chain on a tiny corpus of MIDI files: MusicVAE -> TFRecords -> diffusion -> MIDI/WAV/PNG."""

import pickle

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from scipy.io import wavfile

from ddpm.data.mvae import LatentDataModule
from ddpm.errors import UserError
from ddpm.music.events import WINDOW_STEPS, events_to_notes, read_midi, write_midi
from ddpm.music.prepare import tune_sequences
from ddpm.music.render import render_audio
from ddpm.music.vae_io import decode_latents, load_musicvae
from tests.helpers import compose_train


def test_latents_are_mittal_tfrecords_readable_by_data_mvae(melody_run):
    root, _ = melody_run
    with open(root / "latents" / "active_dims.pkl", "rb") as f:
        dims = pickle.load(f)
    assert len(dims) == 512  # threshold 0: every dimension counts as active
    dm = LatentDataModule(str(root / "latents"), input_shape=(4, 512), normalize=False)
    train_x, eval_x = dm.read_split("train"), dm.read_split("eval")
    assert train_x.shape[1:] == (4, 512) and len(train_x) > 0 and len(eval_x) > 0
    assert np.isfinite(train_x).all()


def test_samples_decode_to_midi_wav_and_piano_roll(melody_run):
    _, out = melody_run
    samples = out / "samples"
    assert np.load(samples / "epoch_000.npz")["samples"].shape == (4, 4, 512)
    midi_files = sorted(samples.glob("epoch_000_*.mid"))
    assert len(midi_files) == 4
    events, _ = read_midi(midi_files[0])
    assert len(events) <= 4 * WINDOW_STEPS
    assert (samples / "epoch_000.png").read_bytes()[:4] == b"\x89PNG"
    rate, audio = wavfile.read(samples / "epoch_000_000.wav")
    assert audio.ndim == 1 and rate == 22050
    assert len(audio) == 17 * rate  # 4 frames x 32 sixteenths at 120 qpm = 16 s, + 1 s of release
    assert not (samples / "epoch_000_002.wav").exists()  # codec.render_n=2


def test_piano_roll_and_audio_logged_to_tensorboard(melody_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out = melody_run
    events = EventAccumulator(str(next((out / "tensorboard").glob("events.out.tfevents.*"))))
    events.Reload()
    assert "samples/piano_roll" in events.Tags()["images"] and "samples/audio" in events.Tags()["audio"]


def test_decode_of_sampled_latents_gives_valid_midi(melody_run, tmp_path):
    root, _ = melody_run
    model = load_musicvae(root / "vae.pt")
    latents = np.random.default_rng(0).standard_normal((2, 3, 512)).astype(np.float32)
    melodies = decode_latents(model, latents, temperature=1.0, seed=0)
    assert melodies.shape == (2, 3 * WINDOW_STEPS)
    path = write_midi(melodies[0], tmp_path / "x.mid")
    back, _ = read_midi(path)
    notes = events_to_notes(melodies[0])
    assert len(events_to_notes(back)) == len(notes)


def test_audio_non_silent_with_the_right_length(tmp_path):
    events = np.zeros(64, dtype=int)
    events[[0, 8, 16, 24]] = [41, 43, 45, 46]
    events[40] = 1  # note-off at step 40: 40 steps of 16ths at 120 qpm = 5.0 s
    midi = write_midi(events, tmp_path / "m.mid", qpm=120)
    wav, renderer = render_audio(midi, tmp_path / "m.wav", sample_rate=22050, seconds=6.0)
    rate, audio = wavfile.read(wav)
    assert rate == 22050 and audio.ndim == 1 and len(audio) == 6 * 22050
    window = lambda a, b: np.sqrt(np.mean(audio[int(a * rate) : int(b * rate)].astype(float) ** 2))  # noqa: E731
    assert all(window(t, t + 0.25) > 200 for t in (0.0, 1.0, 2.0, 3.0)), renderer  # each note sounds
    assert window(5.95, 6.0) < window(0.1, 0.35)  # faded out at the end


def test_sine_fallback_renders_when_no_soundfont(tmp_path, monkeypatch):
    import ddpm.music.render as render

    monkeypatch.setattr(render, "find_soundfont", lambda: None)
    events = np.zeros(32, dtype=int)
    events[0] = 41
    _, renderer = render.render_audio(write_midi(events, tmp_path / "m.mid"), tmp_path / "m.wav", seconds=2.0)
    rate, audio = wavfile.read(tmp_path / "m.wav")
    assert renderer.startswith("sine") and len(audio) == 2 * rate and np.abs(audio[:rate].astype(float)).mean() > 100


def test_tune_sequences_chunks_and_loops():
    latents = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    seq = tune_sequences(latents, 4)
    assert seq.shape == (3, 4, 2)
    assert np.array_equal(seq[0], latents[:4]) and np.array_equal(seq[-1], latents[6:])
    short = tune_sequences(latents[:3], 4)
    assert np.array_equal(short[0], latents[[0, 1, 2, 0]])
    assert np.array_equal(seq[1], latents[4:8])  # consecutive, not overlapping
    exact = tune_sequences(latents[:8], 4)  # two whole sequences: no third one aligned to the end
    assert exact.shape == (2, 4, 2) and np.array_equal(exact[1], latents[4:8])


def test_melody_config_composes(tmp_path):
    cfg = compose_train(["data=melody", "model=transformer"], tmp_path)
    assert cfg.prepare.musicvae.model.z_dim == 512 and cfg.prepare.frames == 16
    assert list(cfg.data.input_shape) == [16, 512] and cfg.codec.musicvae == cfg.prepare.musicvae.path
    cfg.prepare.out_dir = str(tmp_path / "not-prepared")  # the data reads the stage's folder
    dm = instantiate(cfg.data)
    with pytest.raises(FileNotFoundError, match="active_dims.pkl"):
        _ = dm.sample_shape  # known only once the prepare stage has written the active dimensions


# Export and audio rules, pinned by session 29's mutation audit.
# ----- export -----


def test_sampling_weights_are_the_ema_when_there_is_one_else_the_denoiser():
    from ddpm.export import sampling_state_dict

    raw, ema, other = torch.ones(2), torch.full((2,), 3.0), torch.zeros(1)
    with_ema = sampling_state_dict({"denoiser.w": raw, "ema.w": ema, "diffusion.betas": other})
    assert sorted(with_ema) == ["denoiser.w", "diffusion.betas"] and torch.equal(with_ema["denoiser.w"], ema)
    without = sampling_state_dict({"denoiser.w": raw, "diffusion.betas": other})
    assert sorted(without) == ["denoiser.w", "diffusion.betas"] and torch.equal(without["denoiser.w"], raw)


def test_export_stores_the_musicvae_path_it_is_given_and_checks_it(melody_run, tmp_path):
    from ddpm.export import export_checkpoint

    root, run = melody_run
    vae = tmp_path / "shipped" / "musicvae.pt"
    vae.parent.mkdir()
    vae.write_bytes((root / "vae.pt").read_bytes())
    export_checkpoint(run / "last.ckpt", tmp_path / "melody.ckpt", musicvae=vae)
    exported = torch.load(tmp_path / "melody.ckpt", weights_only=True)
    assert exported["run_config"]["codec"]["musicvae"] == str(vae)
    assert sorted(exported["codec"]) == sorted(torch.load(run / "last.ckpt", weights_only=False)["codec"])
    with pytest.raises(UserError, match=r"^--musicvae .*missing\.pt: no such file"):
        export_checkpoint(run / "last.ckpt", tmp_path / "other.ckpt", musicvae=tmp_path / "missing.pt")
    assert not (tmp_path / "other.ckpt").exists()


# ----- audio -----


def test_finish_mixes_down_trims_pads_and_fades_the_last_50_ms(tmp_path):
    from ddpm.music.render import _finish

    rate, path = 1000, tmp_path / "a.wav"
    stereo = np.stack([np.full(3000, 1000, np.int16), np.full(3000, 3000, np.int16)], axis=1)
    wavfile.write(path, rate, stereo)
    _finish(path, 2.0)
    got_rate, audio = wavfile.read(path)
    assert got_rate == rate and audio.shape == (2000,) and audio.dtype == np.int16
    assert (audio[:1950] == 2000).all()  # the mean of the two channels, untouched before the fade
    np.testing.assert_array_equal(audio[1950:], (2000 * np.linspace(1, 0, 50)).astype(np.int16))
    wavfile.write(path, rate, np.full(500, 100, np.int16))
    _finish(path, 1.0)
    audio = wavfile.read(path)[1]
    assert len(audio) == 1000 and (audio[:500] == 100).all() and not audio[500:].any()  # padded with silence


def test_the_sine_fallback_is_normalised_to_80_percent_of_full_scale(tmp_path, monkeypatch):
    import ddpm.music.render as render

    monkeypatch.setattr(render, "find_soundfont", lambda: None)
    events = np.zeros(32, dtype=int)
    events[[0, 8]] = [41, 45]
    midi = write_midi(events, tmp_path / "m.mid")
    render.render_audio(midi, tmp_path / "m.wav", sample_rate=8000)
    audio = wavfile.read(tmp_path / "m.wav")[1]
    assert np.abs(audio.astype(np.int64)).max() == int(0.8 * 32767)
