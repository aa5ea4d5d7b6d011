"""Melodies out: audio through a General MIDI soundfont (FluidSynth), and piano-roll pictures."""

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ddpm.music.events import MAX_PITCH, MIN_PITCH, STEPS_PER_QUARTER, events_to_notes

log = logging.getLogger(__name__)

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian: fluid-soundfont-gm
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",  # Debian: timgm6mb-soundfont
)


def find_soundfont() -> Path | None:
    """The first General MIDI soundfont installed from the system's packages, if any."""
    return next((Path(p) for p in SOUNDFONTS if Path(p).is_file()), None)


def render_audio(
    midi_path: str | Path, wav_path: str | Path, sample_rate: int = 22050, seconds: float | None = None
) -> tuple[Path, str]:
    """Render a MIDI file to 16-bit mono WAV; returns (path, renderer used).

    Uses the ``fluidsynth`` program with a GM soundfont when both are installed (``make install-audio``),
    else pretty_midi's sine-wave synthesis so that audio is still produced. ``seconds`` trims or
    pads the result to exactly that length (a synth's release tail otherwise varies).
    """
    midi_path, wav_path = Path(midi_path), Path(wav_path)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    soundfont, program = find_soundfont(), shutil.which("fluidsynth")
    if soundfont and program:
        cmd = [
            program,
            "-ni",
            "-q",
            "-g",
            "0.8",
            "-r",
            str(sample_rate),
            "-F",
            str(wav_path),
            "-T",
            "wav",
            "-O",
            "s16",
            str(soundfont),
            str(midi_path),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        _finish(wav_path, seconds)
        return wav_path, f"fluidsynth {soundfont.name}"
    import pretty_midi
    from scipy.io import wavfile

    audio = pretty_midi.PrettyMIDI(str(midi_path)).synthesize(fs=sample_rate)
    peak = np.abs(audio).max() or 1.0
    wavfile.write(wav_path, sample_rate, (audio / peak * 0.8 * 32767).astype(np.int16))
    _finish(wav_path, seconds)
    return wav_path, "sine (no soundfont installed)"


def _finish(wav_path: Path, seconds: float | None) -> None:
    """Down-mix to mono and, with ``seconds``, trim or zero-pad to that length with a 50 ms fade-out."""
    from scipy.io import wavfile

    rate, audio = wavfile.read(wav_path)
    audio = audio.mean(axis=1) if audio.ndim == 2 else audio.astype(np.float64)
    if seconds is not None:
        n = round(seconds * rate)
        audio = np.pad(audio[:n], (0, max(0, n - len(audio))))
        fade = min(n, round(0.05 * rate))
        audio[n - fade :] *= np.linspace(1, 0, fade)
    wavfile.write(wav_path, rate, audio.astype(np.int16))


def piano_roll_figure(melodies: list[np.ndarray], titles: list[str] | None = None, steps_per_bar: int = 16):
    """A matplotlib figure with one piano-roll row per melody (event arrays)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(melodies), 1, figsize=(12, 1.6 * len(melodies) + 0.4), squeeze=False)
    for row, (ax, events) in enumerate(zip(axes[:, 0], melodies)):
        notes = events_to_notes(events)
        for note in notes:
            ax.add_patch(plt.Rectangle((note.start, note.pitch - 0.4), note.end - note.start, 0.8, color="tab:blue"))
        pitches = [n.pitch for n in notes] or [60]
        ax.set_xlim(0, len(events))
        ax.set_ylim(max(MIN_PITCH, min(pitches) - 2), min(MAX_PITCH, max(pitches) + 2))
        for bar in range(0, len(events) + 1, steps_per_bar):
            ax.axvline(bar, color="0.85", lw=0.5, zorder=0)
        ax.set_ylabel("pitch")
        if titles:
            ax.set_title(titles[row], fontsize=9, loc="left")
    axes[-1, 0].set_xlabel(f"16th-note steps ({STEPS_PER_QUARTER} per quarter; grey lines: bars of 4/4)")
    fig.tight_layout()
    return fig


def write_piano_roll(melodies: list[np.ndarray], path: str | Path, titles: list[str] | None = None) -> Path:
    import matplotlib.pyplot as plt

    fig = piano_roll_figure(melodies, titles)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)
    return path
