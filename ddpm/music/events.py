"""Monophonic melodies as MusicVAE melody events on a 16th-note grid, and their MIDI form.

One event per 16th-note step (Roberts et al. 2018, ``MelodyOneHotEncoding``): class 0 = no event
(hold the note or rest), 1 = note-off, 2..89 = note-on of MIDI pitch 21..108. 90 classes.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NO_EVENT, NOTE_OFF = 0, 1
MIN_PITCH, MAX_PITCH = 21, 108
NUM_CLASSES = 2 + MAX_PITCH - MIN_PITCH + 1  # 90
STEPS_PER_QUARTER = 4
WINDOW_STEPS = 32  # one MusicVAE window: 2 bars of 4/4
MIN_PITCHES = 5  # a track with fewer distinct pitches is no melody (Magenta's min_unique_pitches)


@dataclass(frozen=True)
class Note:
    """A note on the step grid: pitch (MIDI), onset step, end step (exclusive)."""

    pitch: int
    start: int
    end: int


def notes_to_events(notes: list[Note], num_steps: int | None = None) -> np.ndarray:
    """Notes -> event array [num_steps] (int64). Overlaps are cut at the next onset; of notes with the
    same onset the highest pitch wins (the melody of a chord or of a multi-voice bar)."""
    by_onset: dict[int, Note] = {}
    for note in notes:
        if note.end <= note.start or not MIN_PITCH <= note.pitch <= MAX_PITCH:
            continue
        if note.start not in by_onset or note.pitch > by_onset[note.start].pitch:
            by_onset[note.start] = note
    onsets = sorted(by_onset)
    length = max((by_onset[s].end for s in onsets), default=0) if num_steps is None else num_steps
    events = np.full(length, NO_EVENT, dtype=np.int64)
    for i, start in enumerate(onsets):
        if start >= length:
            break
        note = by_onset[start]
        end = min(note.end, onsets[i + 1] if i + 1 < len(onsets) else note.end, length)
        events[start] = note.pitch - MIN_PITCH + 2
        if end < length and (i + 1 == len(onsets) or onsets[i + 1] > end):
            events[end] = NOTE_OFF
    return events


def events_to_notes(events: np.ndarray) -> list[Note]:
    """Event array -> notes; a note lasts until the next note-on or note-off (or the end)."""
    notes, current = [], None
    for step, event in enumerate(np.asarray(events).tolist()):
        if event == NO_EVENT:
            continue
        if current is not None:
            notes.append(Note(current[0], current[1], step))
            current = None
        if event >= 2:
            current = (event - 2 + MIN_PITCH, step)
    if current is not None:
        notes.append(Note(current[0], current[1], len(events)))
    return notes


def check_events(events: np.ndarray) -> None:
    """Raise ValueError unless ``events`` is a valid 1-D melody event array."""
    events = np.asarray(events)
    if events.ndim != 1 or events.min(initial=0) < 0 or events.max(initial=0) >= NUM_CLASSES:
        raise ValueError(
            f"melody events must be a 1-D array of classes in [0, {NUM_CLASSES}), got shape {events.shape}"
        )


def write_midi(events: np.ndarray, path: str | Path, qpm: float = 120.0, program: int = 0, velocity: int = 90) -> Path:
    """Write a one-instrument MIDI file of the melody (pretty_midi)."""
    import pretty_midi

    check_events(events)
    seconds_per_step = 60.0 / qpm / STEPS_PER_QUARTER
    midi = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    instrument = pretty_midi.Instrument(program=program, name="melody")
    for note in events_to_notes(events):
        instrument.notes.append(
            pretty_midi.Note(velocity, note.pitch, note.start * seconds_per_step, note.end * seconds_per_step)
        )
    midi.instruments.append(instrument)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return path


def _sounding_at_end(events: np.ndarray) -> bool:
    """Whether the last note of ``events`` lasts to their end."""
    changes = np.flatnonzero(events != NO_EVENT)
    return len(changes) > 0 and events[changes[-1]] >= 2


def pad_with_rest(events: np.ndarray, steps: int) -> np.ndarray:
    """``events`` cut to ``steps``, or padded to them with rest: a last note that sounds to the end is ended
    where the padding starts (a note-off), as Magenta's ``Melody.set_length`` does."""
    events = np.asarray(events, dtype=np.int64)[:steps]
    padded = np.zeros(steps, dtype=np.int64)
    padded[: len(events)] = events
    if len(events) < steps and _sounding_at_end(events):
        padded[len(events)] = NOTE_OFF
    return padded


def fit_length(events: np.ndarray, steps: int) -> np.ndarray:
    """Pad to whole windows with rest (a note-off ends the last note), then loop to ``steps`` (or cut to them):
    a melody of another length as the model holds it, repeated from its start as short tunes are in training."""
    events = np.asarray(events, dtype=np.int64)
    padded = pad_with_rest(events, max(1, -(-len(events) // WINDOW_STEPS)) * WINDOW_STEPS)
    sounding = _sounding_at_end(events)  # the last note lasts to the end
    looped = np.resize(padded, steps)
    if sounding and len(events) == len(padded) and padded[0] == NO_EVENT:  # a rest opens each repeat
        looped[len(padded) :: len(padded)] = NOTE_OFF
    return looped


def from_first_bar(events: np.ndarray, bar_steps: int) -> np.ndarray:
    """The events from the bar of the first note on: the whole bars of rest before it are dropped, as a
    melody starts in Magenta's extraction (an intro a track sits out); unchanged with ``bar_steps`` 0."""
    onsets = np.flatnonzero(events >= 2)
    if not len(onsets) or bar_steps <= 0:
        return events
    return events[onsets[0] // bar_steps * bar_steps :]


def splice_frames(melodies: np.ndarray, source: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """``melodies`` [k, steps] with window f of melody i replaced by window ``sources[i, f]`` of ``source``
    [steps] where that is >= 0: an infilled melody with the user's own notes where it keeps (or copies)
    them, rather than the MusicVAE's reconstruction of them."""
    out = np.array(melodies, np.int64)
    windows = np.asarray(source, np.int64).reshape(-1, WINDOW_STEPS)
    for i, f in zip(*np.nonzero(np.asarray(sources) >= 0)):
        out[i, f * WINDOW_STEPS : (f + 1) * WINDOW_STEPS] = windows[sources[i, f]]
    return out


class MissingTrackError(LookupError):
    """A track number that the MIDI file does not have."""


class NoNotesError(ValueError):
    """A readable MIDI file without a pitched note."""


def unreadable(e: Exception) -> str:
    """Why a MIDI file could not be read, in words (pretty_midi and mido raise bare library errors)."""
    if isinstance(e, EOFError):
        return "it ends before its tracks do: cut short?"
    if "empty sequence" in str(e):  # mido read a header but no track events
        return "no MIDI events after its header"
    return next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)


def read_midi(path: str | Path, track: int | None = None) -> tuple[np.ndarray, int]:
    """A MIDI file -> (events on the 16th grid, steps per bar; 0 where a bar is not a whole number of steps)
    of its pitched track ``track`` (file order, from 0), by default the melody (``melody_track``)."""
    events, meter = read_midi_melody(path, track)
    numerator, denominator = (int(x) for x in meter.split("/"))
    steps, remainder = divmod(numerator * 4 * STEPS_PER_QUARTER, denominator)
    return events, 0 if remainder else steps


def read_midi_melody(path: str | Path, track: int | None = None) -> tuple[np.ndarray, str]:
    """A MIDI file -> (events of its pitched track ``track``, by default ``melody_track``'s; meter)."""
    tracks, meter, _ = read_midi_tracks(path)
    if track is None:
        return tracks[melody_track(tracks)], meter
    if not 0 <= track < len(tracks):
        raise MissingTrackError(f"the file has {len(tracks)} pitched tracks (0 to {len(tracks) - 1})")
    return tracks[track], meter


def distinct_pitches(events: np.ndarray) -> int:
    """How many different pitches the melody ``events`` plays."""
    return len(np.unique(events[events >= 2]))


def melody_track(tracks: list[np.ndarray]) -> int:
    """Index of a file's melody by default: of its tracks with at least ``MIN_PITCHES`` distinct pitches (of
    all, if none has), the one with the most note onsets (the first of equals), as the corpus's
    ``midi_tracks=longest`` picks; a busy ostinato or pedal part is not taken for the tune."""
    melodic = [k for k, t in enumerate(tracks) if distinct_pitches(t) >= MIN_PITCHES] or range(len(tracks))
    return max(melodic, key=lambda k: (int((tracks[k] >= 2).sum()), -k))


def read_midi_tracks(path: str | Path) -> tuple[list[np.ndarray], str, list[str]]:
    """A MIDI file -> (events on the 16th grid of each non-drum track with notes, in file order;
    meter as "numerator/denominator"; the tracks' names: their own, else their General MIDI instrument).

    Reads the grid from the file's tempo map (beats as MIDI quarter notes) and the meter from the
    first time signature (4/4 if none); a pickup written as a short first bar is padded to a full bar.
    Every track keeps the file's time line, so all start at the file's step 0.
    """
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(path))
    instruments = [i for i in midi.instruments if not i.is_drum and i.notes]
    if not instruments:
        raise NoNotesError(f"{path}: no pitched notes")
    ticks_per_step = midi.resolution / STEPS_PER_QUARTER

    def grid(instrument) -> np.ndarray:
        return notes_to_events(
            [
                Note(
                    n.pitch,
                    round(midi.time_to_tick(n.start) / ticks_per_step),
                    round(midi.time_to_tick(n.end) / ticks_per_step),
                )
                for n in instrument.notes
            ]
        )

    tracks = [grid(i) for i in instruments]
    signatures = sorted(midi.time_signature_changes, key=lambda ts: ts.time)
    if len(signatures) >= 2:  # a pickup written as a short first bar (3/4 tune: 1/4, then 3/4)?
        pickup, meter = (ts.numerator * 4 * STEPS_PER_QUARTER / ts.denominator for ts in signatures[:2])
        second = midi.time_to_tick(signatures[1].time) / ticks_per_step
        if midi.time_to_tick(signatures[0].time) == 0 and pickup < meter and abs(second - pickup) < 0.01:
            if meter - pickup == int(meter - pickup):  # pad it to a full bar, as the ABC path does
                tracks, signatures = [np.pad(t, (int(meter - pickup), 0)) for t in tracks], signatures[1:]
    ts = signatures[0] if signatures else None
    names = [i.name.strip() or pretty_midi.program_to_instrument_name(i.program) for i in instruments]
    return tracks, "4/4" if ts is None else f"{ts.numerator}/{ts.denominator}", names
