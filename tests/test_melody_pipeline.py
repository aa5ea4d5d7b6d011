"""The melody chain on a tiny corpus of MIDI files: MusicVAE -> TFRecords -> diffusion -> MIDI/WAV/PNG."""

import pickle

import numpy as np
import pytest
from hydra.utils import instantiate
from scipy.io import wavfile

from ddpm.data.mvae import LatentDataModule
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
