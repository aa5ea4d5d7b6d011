"""Melodies in the studio: uploads checked and fitted to the model's length, bar ranges, splicing.

A studio bar is 16 sixteenth steps (4/4); one model frame is one 2-bar MusicVAE window (32 steps).
Bars are numbered from 1 in the page and in these functions' messages.
"""

import tempfile
from pathlib import Path

import numpy as np

from ddpm.errors import UserError
from ddpm.music.events import (
    NOTE_OFF,
    WINDOW_STEPS,
    NoNotesError,
    events_to_notes,
    fit_length,
    from_first_bar,
    melody_track,
    read_midi_tracks,
    unreadable,
)

BAR_STEPS = 16
BARS_PER_FRAME = WINDOW_STEPS // BAR_STEPS  # 2


def read_upload(name: str, data: bytes, steps: int, track: int | None = None) -> tuple[np.ndarray, str, list[dict]]:
    """An uploaded MIDI file's bytes -> (events ``[steps]``, note for the user, its pitched tracks).

    The melody is the file's pitched track ``track`` (file order, from 0), by default its melody
    (``melody_track``), from the bar of its first note; the tracks are ``{"index", "name", "notes", "chosen"}``
    so the page can offer the others. Raises ``UserError`` naming the file when it is empty, not MIDI or
    has no pitched notes, and ``UploadError`` (with the tracks) when it has no track ``track`` or the
    track has no melody or is longer than the model's ``steps``. A shorter melody is padded to whole 2-bar windows
    with rest, then played again from its start until ``steps`` are filled, as the training data repeats
    short tunes.
    """
    if not data:
        raise UserError(f"{name}: the file is empty (expected a MIDI file, .mid)")
    if data[:4] != b"MThd":
        raise UserError(f"{name}: not a MIDI file (a .mid file starts with 'MThd'; this one starts with {data[:4]!r})")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.mid"
        path.write_bytes(data)
        try:
            lines, _, names = read_midi_tracks(path)
        except NoNotesError as e:
            raise UserError(f"{name}: no melody (no pitched, non-drum notes in the file)") from e
        except Exception as e:  # noqa: BLE001 - pretty_midi/mido raise many types for broken files
            raise UserError(f"{name}: not a readable MIDI file ({unreadable(e)})") from e
    chosen = melody_track(lines) if track is None else track
    tracks = [
        {"index": k, "name": names[k], "notes": int((e >= 2).sum()), "chosen": k == chosen} for k, e in enumerate(lines)
    ]
    if not 0 <= chosen < len(lines):
        raise UploadError(
            f"{name}: no track {track}; the file has {len(lines)} pitched tracks (0 to {len(lines) - 1})", tracks
        )
    where = f"{name}: track {chosen} ({names[chosen]})" if len(lines) > 1 else name
    events = lines[chosen]
    if not (events >= 2).any():
        raise UploadError(f"{where}: no melody (no notes between MIDI pitch 21 and 108)", tracks)
    events = _trim_rests(from_first_bar(events, BAR_STEPS))  # from the bar of its first note, as in training
    bars, max_bars = -(-len(events) // BAR_STEPS), steps // BAR_STEPS
    if len(events) > steps:
        raise UploadError(f"{where}: {bars} bars is too long; this model writes at most {max_bars} bars of 4/4", tracks)
    note = f"{bars} bars" if len(events) == steps else f"{bars} bars, repeated to fill the model's {max_bars} bars"
    if len(lines) > 1:
        note = f"track {chosen} of {len(lines)} ({names[chosen]}), {note}"
    return fit_length(events, steps), note, tracks


class UploadError(UserError):
    """Bad upload of a readable MIDI file: the message, and the file's tracks so that the page can offer another."""

    def __init__(self, message: str, tracks: list[dict]):
        super().__init__(message)
        self.tracks = tracks


def _trim_rests(events: np.ndarray) -> np.ndarray:
    """Drop the trailing steps after the last sounding note (a note-off there ends it)."""
    sounding = np.flatnonzero(events >= 2)
    last = int(sounding[-1])
    after = np.flatnonzero(events[last + 1 :] == NOTE_OFF)
    end = last + 1 + int(after[0]) if len(after) else len(events)
    return events[: end + 1] if end < len(events) else events


def bars_to_frames(first_bar: int, last_bar: int, frames: int) -> tuple[int, int]:
    """Bars ``first_bar..last_bar`` (1-based, inclusive) -> frames ``[start, end)`` that hold them.

    The range snaps outwards to whole 2-bar frames: bars 3-6 are frames 1 and 2, bars 4-5 too.
    """
    bars = frames * BARS_PER_FRAME
    if not 1 <= first_bar <= last_bar <= bars:
        raise UserError(f"bars {first_bar}-{last_bar}: expected 1 <= first <= last <= {bars} (this model's bars)")
    return (first_bar - 1) // BARS_PER_FRAME, (last_bar - 1) // BARS_PER_FRAME + 1


def frames_to_bars(start: int, end: int) -> tuple[int, int]:
    """Frames ``[start, end)`` -> the bars they cover (1-based, inclusive)."""
    return start * BARS_PER_FRAME + 1, end * BARS_PER_FRAME


def notes_json(events: np.ndarray) -> list[list[int]]:
    """Events -> ``[[pitch, start, end], ...]`` for drawing the piano roll in the page."""
    return [[n.pitch, n.start, n.end] for n in events_to_notes(events)]
