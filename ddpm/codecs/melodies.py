"""Melodies: latent sequences decoded by the run's MusicVAE into 16th-step events, written as MIDI
(every sample), WAV and a piano roll (the first ``render_n``)."""

import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from ddpm.codecs.latents import LatentCodec
from ddpm.errors import ConfigError, MissingFileError
from ddpm.io.atomic import atomic_path
from ddpm.music.events import STEPS_PER_QUARTER, WINDOW_STEPS, write_midi


class MelodyCodec(LatentCodec):
    """Args:
    musicvae: the MusicVAE file the latents were made with.
    temperature: decoding temperature (0: greedy). render_n: samples rendered to WAV and drawn.
    qpm: tempo of the MIDI and audio. seed: noise of dropped dims and of sampled decoding.
    refill: how dropped dims are filled before decoding (``LatentCodec``).
    """

    def __init__(
        self,
        musicvae: str,
        temperature: float = 0.0,
        render_n: int = 4,
        qpm: float = 120.0,
        seed: int = 0,
        refill: str = "shared",
    ):
        super().__init__(seed, refill)
        self.musicvae_path = Path(musicvae)
        self.temperature, self.render_n, self.qpm = float(temperature), int(render_n), float(qpm)
        for key, ok, expected in (
            ("qpm", 0 < self.qpm < math.inf, "a positive tempo"),
            ("temperature", 0 <= self.temperature <= 2, "a number in [0, 2] (0: greedy)"),
            ("render_n", self.render_n >= 0, "a count >= 0"),
        ):
            if not ok:
                raise ConfigError(f"codec.{key}={getattr(self, key)}: expected {expected}")
        self._musicvae = None
        self._decoded: tuple[torch.Tensor, int | None, np.ndarray] | None = None

    @property
    def musicvae(self):
        if self._musicvae is None:
            from ddpm.music.vae_io import load_musicvae

            self._musicvae = load_musicvae(self.musicvae_path)
        return self._musicvae

    def load_state_dict(self, state: dict) -> None:
        """As ``LatentCodec``; a restored model is about to decode, so a MusicVAE that cannot be found or read
        is refused now, before anything is sampled."""
        from ddpm.music.vae_io import PROJECT_DIR, load_musicvae, musicvae_file

        super().load_state_dict(state)
        if not musicvae_file(self.musicvae_path).is_file():
            raise MissingFileError(
                f"codec.musicvae={self.musicvae_path}: no such MusicVAE in {Path.cwd()} or {PROJECT_DIR}"
            )
        self._musicvae = load_musicvae(self.musicvae_path)

    def to(self, device: torch.device | str) -> "MelodyCodec":
        """Run the MusicVAE on ``device``."""
        self.musicvae.to(device)
        return self

    @property
    def frames(self) -> int:
        return self.space.seq_len

    @property
    def seconds(self) -> float:
        """Audio length: the sequence at ``qpm`` plus one second for the last note to ring."""
        return self.frames * WINDOW_STEPS * 60.0 / self.qpm / STEPS_PER_QUARTER + 1.0

    def melodies(self, x, seed: int | None = None) -> np.ndarray:
        """Model-space samples -> melodies ``[n, frames * 32]`` (events); ``seed`` as in ``decode``."""
        if self._decoded is not None and self._decoded[0] is x and self._decoded[1] == seed:
            return self._decoded[2]  # write then log: decoded once
        melodies = self.melodies_from_latents(self.decode(x, seed))
        self._decoded = (x, seed, melodies)
        return melodies

    def melodies_from_latents(self, latents: np.ndarray) -> np.ndarray:
        """Original-space latents ``[n, frames, z_dim]`` -> melodies ``[n, frames * 32]``."""
        from ddpm.music.vae_io import decode_latents

        return decode_latents(self.musicvae, latents, self.temperature, self.seed)

    def encode_latents(self, melodies: np.ndarray) -> np.ndarray:
        """Melodies ``[n, frames * 32]`` -> MusicVAE means of their windows ``[n, frames, z_dim]``."""
        from ddpm.music.vae_io import encode_windows

        melodies = np.asarray(melodies, np.int64)
        n = len(melodies)
        if melodies.ndim != 2 or melodies.shape[1] != self.frames * WINDOW_STEPS:
            raise ValueError(f"melodies must be [n, {self.frames * WINDOW_STEPS}] events, got {list(melodies.shape)}")
        mu, _ = encode_windows(self.musicvae, melodies.reshape(n * self.frames, WINDOW_STEPS))
        return mu.reshape(n, self.frames, -1)

    def encode(self, melodies: np.ndarray) -> torch.Tensor:
        """Melodies ``[n, frames * 32]`` -> model space ``[n, frames, kept dims]``, as training data."""
        return self.to_model(self.encode_latents(melodies))

    def write(
        self, x, out_dir: str | Path, name: str, seed: int | None = None, latents=None, melodies=None
    ) -> dict[str, Path]:
        """Latents (``.npz``, ``.pkl``), ``name_XXX.mid`` per sample, ``name_XXX.wav`` and ``name.png``
        (piano roll) for the first ``render_n``; ``latents`` (original space) replace ``decode(x, seed)``, and
        ``melodies`` (events ``[n, steps]``, e.g. with a user's own kept bars) replace their decoding."""
        from ddpm.music.render import render_audio, write_piano_roll

        files = super().write(x, out_dir, name, seed, latents)
        out_dir = Path(out_dir)
        if melodies is None:
            melodies = self.melodies(x, seed) if latents is None else self.melodies_from_latents(latents)
        for i, melody in enumerate(melodies):
            files[f"mid_{i:03d}"] = midi = out_dir / f"{name}_{i:03d}.mid"
            with atomic_path(midi) as tmp:
                write_midi(melody, tmp, qpm=self.qpm)
            if i < self.render_n:
                files[f"wav_{i:03d}"] = wav = out_dir / f"{name}_{i:03d}.wav"
                with atomic_path(wav) as tmp:
                    render_audio(midi, tmp, seconds=self.seconds)
        shown = melodies[: self.render_n]
        if len(shown):  # render_n=0: no piano roll
            files["png"] = out_dir / f"{name}.png"
            with atomic_path(files["png"]) as tmp:
                write_piano_roll(list(shown), tmp, [f"{name} #{i}" for i in range(len(shown))])
        return files

    def log(self, x, writer, step: int) -> None:
        """Piano roll and the first sample's audio to TensorBoard."""
        import matplotlib.pyplot as plt
        from scipy.io import wavfile

        from ddpm.music.render import piano_roll_figure, render_audio

        shown = self.melodies(x)[: self.render_n]
        if not len(shown):  # render_n=0: nothing drawn or rendered
            return
        fig = piano_roll_figure(list(shown))
        writer.add_figure("samples/piano_roll", fig, step)
        plt.close(fig)
        with tempfile.TemporaryDirectory() as tmp:
            midi = write_midi(shown[0], Path(tmp) / "s.mid", qpm=self.qpm)
            wav, _ = render_audio(midi, Path(tmp) / "s.wav", seconds=self.seconds)
            rate, audio = wavfile.read(wav)
        writer.add_audio("samples/audio", torch.from_numpy(audio / 32768.0).float()[None], step, sample_rate=rate)
