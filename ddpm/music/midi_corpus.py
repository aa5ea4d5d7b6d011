"""Melodies from a folder of the user's MIDI files: every pitched track a melody (Magenta's practice),
from the bar of its first note, through the same grid and meter rules as the corpus's tunes."""

import hashlib
from collections import Counter
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np

from ddpm.errors import ConfigError
from ddpm.music.events import MIN_PITCHES, STEPS_PER_QUARTER, distinct_pitches, from_first_bar, read_midi_tracks
from ddpm.music.tunes import Records, Tune, bar_fits, events_to_tune, parse_files

MIDI_TRACKS = ("each", "longest")  # every track a melody (Magenta's practice), or the melody with the most notes
MIDI_VERSION = 2  # the same, for the MIDI folder's tunes alone (2: tracks, first-bar start, 5 pitches)


def midi_tunes(folder: str | Path, meters: str = "duple", tracks: str = "each") -> tuple[list[Tune], dict[str, int]]:
    """Melodies from a folder of ``.mid``/``.midi`` files, through the same grid and meter rules."""
    tunes, records = folder_tunes(folder, meters, tracks)
    return tunes, dict(Counter(reason for _, reason in records if reason != "ok"))


def midi_files(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).rglob("*.mid*"))


def midi_digest(folder: str | Path | None) -> str | None:
    """A digest of the MIDI files under ``folder`` (their paths in it and their bytes), so that a folder
    whose files were added, removed or changed is extracted again; ``None`` for no folder or a missing one."""
    if not folder or not Path(folder).is_dir():
        return None
    digest = hashlib.sha256()
    for path in midi_files(folder):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def check_tracks(tracks: str) -> str:
    if tracks not in MIDI_TRACKS:
        raise ConfigError(f"prepare.corpus.midi_tracks: got {tracks!r}; expected one of {list(MIDI_TRACKS)}")
    return tracks


def folder_tunes(folder: str | Path, meters: str, tracks: str = "each", workers: int = 0) -> tuple[list[Tune], Records]:
    """Tunes of a MIDI folder and (meter, "ok" or why skipped) for each track read (one for a file skipped
    whole), parsed in ``workers`` processes (0: in this one) with progress, as the corpus files are."""
    check_tracks(tracks)
    return parse_files(midi_files(folder), partial(_midi_file, tracks=tracks), meters, workers, unit="MIDI files")


def _midi_file(path: str, meters: str, tracks: str) -> tuple[list[Tune], Records]:
    """The tunes of one MIDI file: its tracks (``tracks``: "each" or "longest") through ``melody_line``."""
    path = Path(path)
    try:
        lines, meter, _ = read_midi_tracks(path)
    except Exception:  # noqa: BLE001 - unreadable or empty MIDI file
        return [], [("unknown", "unreadable midi")]
    numerator, denominator = (int(x) for x in meter.split("/"))
    bar = Fraction(numerator * 4 * STEPS_PER_QUARTER, denominator)
    if not bar_fits(bar, meters):
        return [], [(meter, f"meter {meter}")]
    seen: list[np.ndarray] = []
    lines = [(k, *melody_line(events, int(bar), seen)) for k, events in enumerate(lines)]  # (track, events, reason)
    if tracks == "longest":  # of the tracks that are melodies the one with the most notes, else why the first is not
        melodies = [line for line in lines if line[2] == "ok"] or [lines[0]]
        lines = [max(melodies, key=lambda line: ((line[1] >= 2).sum(), -line[0]))]
    tunes, records = [], []
    for k, events, reason in lines:
        tune, reason = events_to_tune(events, path.stem, f"{path}#{k}", meter) if reason == "ok" else (None, reason)
        tunes += [tune] if tune is not None else []
        records.append((meter, reason))
    return tunes, records


def melody_line(events: np.ndarray, bar: int, seen: list[np.ndarray]) -> tuple[np.ndarray, str]:
    """One MIDI track's events -> (them from the bar of the first note, "ok" or why they are no melody).

    Magenta's melody extraction (``melodies_lib.extract_melodies``) starts a melody at the bar of its
    first note and keeps lines of at least 5 distinct pitches; a track that repeats an earlier track
    of the file note for note (a doubled part) is left out, so it is not learned twice.
    """
    if not (events >= 2).any():
        return events, "no notes"
    events = from_first_bar(events, bar)
    if distinct_pitches(events) < MIN_PITCHES:
        return events, f"fewer than {MIN_PITCHES} pitches"
    if any(len(e) == len(events) and (e == events).all() for e in seen):
        return events, "doubled track"
    seen.append(events)
    return events, "ok"
