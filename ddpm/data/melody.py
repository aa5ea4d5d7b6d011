"""``data=melody``: the folk-melody chain as a DataModule (the main job's default).

``prepare_data`` runs ``ddpm.music.pipeline.prepare_melody_latents`` once (corpus -> MusicVAE ->
latent TFRecords + ``active_dims.pkl`` in ``dir``), after which this is ``data=mvae`` on those
files, sliced to the active dimensions. Samples are also decoded with the MusicVAE into melodies:
MIDI for every sample, WAV and a piano roll for the first ``render_n``.
"""

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ddpm.data.mvae import LatentDataModule
from ddpm.music.events import STEPS_PER_QUARTER, WINDOW_STEPS, write_midi

log = logging.getLogger(__name__)


class MelodyDataModule(LatentDataModule):
    """Latent sequences of folk tunes, made on first use; decodes samples to music.

    Args:
        dir: where the latent TFRecords, ``active_dims.pkl`` and ``report.json`` go.
        musicvae: MusicVAE checkpoint; trained with ``vae`` (and saved there) when missing.
        corpus, vae: the ``corpus`` and ``musicvae`` config groups.
        frames: 2-bar windows per sequence (16 = 32 bars).
        kl_threshold: a latent dimension is active when its mean KL exceeds this (nats).
        temperature: MusicVAE decoding temperature (0: greedy).
        render_n: samples rendered to WAV and drawn in the piano roll.
        qpm: tempo of the MIDI and audio.
    """

    def __init__(
        self,
        corpus: DictConfig,
        vae: DictConfig,
        dir: str = "data/melody_latents",
        musicvae: str = "checkpoints/musicvae.pt",
        frames: int = 16,
        kl_threshold: float = 0.1,
        shards: int = 4,
        normalize: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        temperature: float = 0.0,
        render_n: int = 4,
        qpm: float = 120.0,
        seed: int = 0,
    ):
        super().__init__(
            dir=dir,
            input_shape=(frames, vae.model.z_dim),
            slice_dims=str(Path(dir) / "active_dims.pkl"),
            normalize=normalize,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
        )
        self.corpus, self.vae = corpus, vae
        self.musicvae_path = Path(musicvae)
        self.frames, self.kl_threshold, self.shards = frames, kl_threshold, shards
        self.temperature, self.render_n, self.qpm = temperature, render_n, qpm
        self._musicvae = None
        self._decoded: tuple[tuple[torch.Tensor, int | None], np.ndarray] | None = None

    def prepare_data(self) -> None:
        from ddpm.music.pipeline import prepare_melody_latents

        report = prepare_melody_latents(
            self.dir, self.musicvae_path, self.corpus, self.vae, self.frames, self.shards, self.kl_threshold
        )
        log.info("melody latents in %s: %s", self.dir, report)

    @property
    def musicvae(self):
        if self._musicvae is None:
            from ddpm.music.pipeline import load_musicvae

            self._musicvae = load_musicvae(self.musicvae_path)
        return self._musicvae

    def melodies(self, x: torch.Tensor, seed: int | None = None) -> np.ndarray:
        """Model-space samples -> melodies ``[n, frames * 32]`` (events), via the MusicVAE decoder.

        ``seed`` draws the noise that re-fills the dropped latent dimensions (see ``decode``).
        """
        key = (x, seed)
        if self._decoded is not None and self._decoded[0][0] is x and self._decoded[0][1] == seed:
            return self._decoded[1]  # write_samples then log_samples
        melodies = self.melodies_from_latents(self.decode(x, seed))
        self._decoded = (key, melodies)
        return melodies

    def melodies_from_latents(self, latents: np.ndarray) -> np.ndarray:
        """Original-space latents ``[n, frames, z_dim]`` -> melodies ``[n, frames * 32]``."""
        from ddpm.music.pipeline import decode_latents

        return decode_latents(self.musicvae, latents, self.temperature, self.seed)

    def encode_latents(self, melodies: np.ndarray) -> np.ndarray:
        """Melodies ``[n, frames * 32]`` -> MusicVAE means of their windows ``[n, frames, z_dim]``."""
        from ddpm.music.pipeline import encode_windows

        melodies = np.asarray(melodies, np.int64)
        n = len(melodies)
        if melodies.ndim != 2 or melodies.shape[1] != self.frames * WINDOW_STEPS:
            raise ValueError(f"melodies must be [n, {self.frames * WINDOW_STEPS}] events, got {list(melodies.shape)}")
        mu, _ = encode_windows(self.musicvae, melodies.reshape(n * self.frames, WINDOW_STEPS))
        return mu.reshape(n, self.frames, -1)

    def encode_melodies(self, melodies: np.ndarray) -> torch.Tensor:
        """Melodies ``[n, frames * 32]`` -> model space ``[n, frames, kept dims]``, as training data."""
        return self.to_model_space(self.encode_latents(melodies))

    def eval_melodies(self, n: int | None = None) -> tuple[np.ndarray, list[str]]:
        """The eval split's sequences as events straight from the corpus ``[N, frames * 32]``, and titles.

        Row i is the melody whose MusicVAE means are eval record i (``read_split("eval")``).
        """
        from ddpm.music.pipeline import EVAL_EVENTS

        path = self.dir / EVAL_EVENTS
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the prepare stage (python train.py) to make it")
        with np.load(path) as data:
            events, titles = data["events"].astype(np.int64), [str(t) for t in data["titles"]]
        return (events, titles) if n is None else (events[:n], titles[:n])

    @property
    def seconds(self) -> float:
        """Audio length: the sequence at ``qpm`` plus one second for the last note to ring."""
        return self.frames * WINDOW_STEPS * 60.0 / self.qpm / STEPS_PER_QUARTER + 1.0

    def write_samples(
        self,
        x: torch.Tensor,
        out_dir: str | Path,
        name: str,
        seed: int | None = None,
        latents: np.ndarray | None = None,
    ) -> dict[str, Path]:
        """Latents (``.npz``, ``.pkl``), ``name_XXX.mid`` per sample, ``name_XXX.wav`` and ``name.png``
        (piano roll) for the first ``render_n``; ``latents`` (original space) replace ``decode(x, seed)``."""
        from ddpm.music.render import render_audio, write_piano_roll

        files = super().write_samples(x, out_dir, name, seed, latents)
        out_dir = Path(out_dir)
        melodies = self.melodies(x, seed) if latents is None else self.melodies_from_latents(latents)
        for i, melody in enumerate(melodies):
            midi = write_midi(melody, out_dir / f"{name}_{i:03d}.mid", qpm=self.qpm)
            files[f"mid_{i:03d}"] = midi
            if i < self.render_n:
                files[f"wav_{i:03d}"], _ = render_audio(midi, out_dir / f"{name}_{i:03d}.wav", seconds=self.seconds)
        shown = melodies[: self.render_n]
        titles = [f"{name} #{i}" for i in range(len(shown))]
        files["png"] = write_piano_roll(list(shown), out_dir / f"{name}.png", titles)
        return files

    def log_samples(self, x: torch.Tensor, writer, step: int) -> None:
        """Piano roll and the first sample's audio to TensorBoard."""
        import matplotlib.pyplot as plt
        from scipy.io import wavfile

        from ddpm.music.render import piano_roll_figure, render_audio

        shown = self.melodies(x)[: self.render_n]
        fig = piano_roll_figure(list(shown))
        writer.add_figure("samples/piano_roll", fig, step)
        plt.close(fig)
        with tempfile.TemporaryDirectory() as tmp:
            midi = write_midi(shown[0], Path(tmp) / "s.mid", qpm=self.qpm)
            wav, _ = render_audio(midi, Path(tmp) / "s.wav", seconds=self.seconds)
            rate, audio = wavfile.read(wav)
        writer.add_audio("samples/audio", torch.from_numpy(audio / 32768.0).float()[None], step, sample_rate=rate)
