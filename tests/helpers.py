"""Config helpers for tests: tiny, fast versions of the real configs."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"

FAST = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "diffusion.betas.timesteps=10",
    "callbacks.samples.n=4",
    "callbacks.samples.every_n_epochs=1",
    "callbacks.calibration.n=32",
]


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """``conf/<name>.yaml`` with ``overrides``, as the entry point would compose it."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(name, overrides=overrides)


def sample_cfg(overrides: list[str]) -> DictConfig:
    """``sample.py``'s config with ``overrides``."""
    return compose_config("sample", overrides)


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=overrides)
    if output_dir is not None:
        cfg.paths.output_dir = str(output_dir)
    return cfg


TINY_VAE = [
    "prepare.musicvae.model.z_dim=512",
    "prepare.musicvae.model.encoder_hidden=16",
    "prepare.musicvae.model.decoder_hidden=32",
    "prepare.musicvae.batch_size=8",
    "+prepare.musicvae.trainer.max_steps=3",
    "prepare.musicvae.trainer.max_time=null",
]
TINY_TRANSFORMER = ["model.num_layers=1", "model.num_heads=2", "model.mlp_dims=32", "model.embed_channels=16"]


def make_melody_run(root: Path) -> Path:
    """A tiny melody chain in ``root``: 24 MIDI "tunes" -> tiny MusicVAE -> latents -> 1-epoch TransformerDDPM.

    Returns the run folder (``last.ckpt``, ``samples/``); latents in ``root/latents``.
    """
    import numpy as np

    from ddpm.music.events import WINDOW_STEPS, write_midi
    from ddpm.training import train

    rng = np.random.default_rng(0)
    for i in range(24):  # 24 "tunes" of 2-6 windows, scales with rests
        steps = WINDOW_STEPS * int(rng.integers(2, 7))
        events = np.zeros(steps, dtype=int)
        onsets = np.arange(0, steps, int(rng.choice([2, 4])))
        events[onsets] = 2 + 60 - 21 + rng.integers(-7, 8, len(onsets))
        write_midi(events, root / "midi" / f"tune{i:02d}.mid")
    out = root / "run"
    train(compose_train(melody_overrides(root), out))
    return out


def melody_overrides(root: Path) -> list[str]:
    """The tiny melody chain's train.py overrides: MIDI tunes in ``root/midi``, files under ``root``."""
    return (
        FAST
        + TINY_TRANSFORMER
        + TINY_VAE
        + [
            "data=melody",
            "model=transformer",
            f"prepare.out_dir={root / 'latents'}",
            f"prepare.musicvae.path={root / 'vae.pt'}",
            "prepare.corpus.collections=[]",
            f"prepare.corpus.midi_dir={root / 'midi'}",
            f"prepare.corpus.cache_dir={root / 'cache'}",
            "prepare.corpus.eval_fraction=0.3",
            "prepare.frames=4",
            "prepare.kl_threshold=0.0",
            "data.batch_size=4",
            "codec.render_n=2",
            "diffusion.time_condition=noise_level",
        ]
    )


def write_tracks(
    path: Path,
    tracks: list[list[tuple[int, int, int]]],
    meter: tuple[int, int] = (4, 4),
    programs: list[int] | None = None,
    drums: tuple[int, ...] = (),
) -> None:
    """A MIDI file at 120 qpm (a 16th step = 0.125 s) in ``meter``: a track a list of (pitch, start step, end
    step), track i on program ``programs[i]`` (default i), a drum track where i is in ``drums``."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for i, notes in enumerate(tracks):
        track = pretty_midi.Instrument(programs[i] if programs else i, is_drum=i in drums)
        track.notes = [pretty_midi.Note(90, p, a * 0.125, b * 0.125) for p, a, b in notes]
        midi.instruments.append(track)
    midi.time_signature_changes = [pretty_midi.TimeSignature(*meter, 0.0)]
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))


SCALE = [60, 62, 64, 65, 67, 69, 71, 72]  # C major, C4 to C5
