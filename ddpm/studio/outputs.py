"""The studio's files: one folder per request under the output folder, every file written atomically.

A file appears under its final name only once complete (written to a temporary name in the same
folder, then ``os.replace``), so a download never sees half a file, and two requests never share a
folder, so they cannot overwrite each other.
"""

import re
import uuid
from pathlib import Path

import numpy as np

from ddpm.io.atomic import atomic_path
from ddpm.music.events import write_midi
from ddpm.music.render import render_audio

FOLDER = re.compile(r"^[a-z]+-[0-9a-f]{12}$")
FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.(mid|wav)$")


def new_folder(out_dir: Path, kind: str) -> Path:
    """A fresh folder ``<out_dir>/<kind>-<12 hex digits>`` for one request."""
    folder = out_dir / f"{kind}-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    return folder


def write_melody(folder: Path, name: str, events: np.ndarray, qpm: float, seconds: float) -> dict[str, Path]:
    """``name.mid`` and ``name.wav`` (FluidSynth with the GM soundfont, or sine waves) in ``folder``."""
    midi, wav = folder / f"{name}.mid", folder / f"{name}.wav"
    with atomic_path(midi) as tmp:
        write_midi(events, tmp, qpm=qpm)
    with atomic_path(wav) as tmp:
        render_audio(midi, tmp, seconds=seconds)
    return {"midi": midi, "audio": wav}


def resolve_download(out_dir: Path, folder: str, name: str) -> Path | None:
    """The file ``<out_dir>/<folder>/<name>`` if both parts are names the studio writes and it exists.

    Only the studio's own folder and file names pass (no ``..``, no separators, no hidden files),
    and the resolved path must still lie inside ``out_dir`` (no symbolic link out of it).
    """
    if not FOLDER.match(folder) or not FILE.match(name):
        return None
    root = out_dir.resolve()
    path = (root / folder / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path
