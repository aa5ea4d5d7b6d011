import numpy as np
import pytest

from ddpm.music.events import (
    MIN_PITCH,
    NOTE_OFF,
    NUM_CLASSES,
    Note,
    events_to_notes,
    fit_length,
    notes_to_events,
    read_midi,
    write_midi,
)


def on(pitch: int) -> int:
    return pitch - 21 + 2


def test_encoding_constants_match_musicvae():
    assert NUM_CLASSES == 90 and on(21) == 2 and on(108) == 89


def test_notes_to_events_cuts_overlaps_and_keeps_top_note():
    notes = [Note(60, 0, 6), Note(62, 4, 6), Note(64, 8, 12), Note(67, 8, 10), Note(65, 14, 16)]
    events = notes_to_events(notes, 16)
    expected = np.zeros(16, dtype=np.int64)
    expected[[0, 4, 6, 8, 10, 14]] = [on(60), on(62), NOTE_OFF, on(67), NOTE_OFF, on(65)]
    assert events.tolist() == expected.tolist()
    assert events_to_notes(events) == [Note(60, 0, 4), Note(62, 4, 6), Note(67, 8, 10), Note(65, 14, 16)]


def test_out_of_range_and_empty_notes_dropped():
    events = notes_to_events([Note(10, 0, 4), Note(60, 4, 4), Note(72, 4, 8)])
    assert events.tolist() == [0, 0, 0, 0, on(72), 0, 0, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_events_notes_round_trip_is_monophonic(seed):
    rng = np.random.default_rng(seed)
    events = rng.choice(NUM_CLASSES, size=64, p=np.r_[0.6, 0.1, np.full(88, 0.3 / 88)])
    notes = events_to_notes(events)
    assert all(a.end <= b.start for a, b in zip(notes, notes[1:]))  # one note at a time
    assert notes_to_events(notes, 64).tolist() == _canonical(events).tolist()


def _canonical(events):
    """Note-offs with no sounding note carry no information: drop them, as a round trip does."""
    out, sounding = events.copy(), False
    for i, e in enumerate(events):
        if e == NOTE_OFF:
            out[i] = NOTE_OFF if sounding else 0
            sounding = False
        elif e >= 2:
            sounding = True
    return out


def test_midi_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    events = rng.choice(NUM_CLASSES, size=128, p=np.r_[0.6, 0.1, np.full(88, 0.3 / 88)])
    for qpm in (90.0, 120.0, 150.0):
        path = write_midi(events, tmp_path / f"m{qpm}.mid", qpm=qpm)
        back, steps_per_bar = read_midi(path)
        expected = _canonical(events)
        last = np.flatnonzero(expected)[-1] + 1
        assert back[:last].tolist() == expected[:last].tolist() and steps_per_bar == 16


def test_write_midi_rejects_bad_events(tmp_path):
    with pytest.raises(ValueError, match="1-D array of classes"):
        write_midi(np.array([0, 95]), tmp_path / "x.mid")


def test_padding_to_whole_windows_ends_a_sounding_last_note():
    # As Magenta's Melody.set_length: a note that lasts to the end is ended where the padding starts.
    held = np.array([on(60), 0, 0, on(62)] + [0] * 6)  # the D sounds to step 10
    assert fit_length(held, 32).tolist() == held.tolist() + [NOTE_OFF] + [0] * 21
    ended = np.array([on(60), 0, NOTE_OFF, 0])  # already ended: rest padding only
    assert fit_length(ended, 32).tolist() == ended.tolist() + [0] * 28
    whole = np.r_[on(64), np.zeros(31, int)]  # a whole window: nothing to pad, the note is not cut
    assert fit_length(whole, 32).tolist() == whole.tolist()
    assert fit_length(np.zeros(0, int), 32).tolist() == [0] * 32  # at least one window
    lowest = np.array([on(MIN_PITCH), 0, 0])  # the lowest note (event 2) is a note like any other
    assert fit_length(lowest, 32).tolist() == lowest.tolist() + [NOTE_OFF] + [0] * 28
    longer = np.r_[held, np.zeros(30, int)]  # 40 steps: two windows, the note ended at step 40
    assert fit_length(longer, 64)[40] == NOTE_OFF and fit_length(longer, 64)[41:].tolist() == [0] * 23
    opening_rest = np.zeros(32, int)  # a whole window that opens with a rest and ends on a sounding note
    opening_rest[1] = on(60)
    looped = fit_length(opening_rest, 96)  # each repeat ends the held note at its first step, then plays on
    assert looped[[0, 1, 32, 33, 64, 65]].tolist() == [0, on(60), NOTE_OFF, on(60), NOTE_OFF, on(60)]


def test_melody_track_needs_five_pitches_and_takes_the_first_of_equals():
    from ddpm.music.events import melody_track

    five = np.zeros(40, int)
    five[[0, 8, 16, 24, 32]] = [on(p) for p in (60, 62, 64, 65, 67)]  # 5 pitches, 5 notes
    four = np.zeros(40, int)
    four[::2] = [on(60 + k % 4) for k in range(20)]  # 4 pitches, 20 notes: fewer than 5 pitches, no melody
    assert melody_track([four, five]) == 1 and melody_track([five, five.copy()]) == 0
    assert melody_track([four[:10], four]) == 1  # none has 5 pitches: the one with the most notes


def test_a_tune_is_padded_to_whole_windows_only_when_it_needs_it():
    from ddpm.music.tunes import events_to_tune

    window = np.r_[on(60), np.zeros(31, int)]
    assert len(events_to_tune(window, "t", "s", "4/4")[0].events) == 32  # already whole: not padded
    assert len(events_to_tune(np.r_[window, np.zeros(9, int)], "t", "s", "4/4")[0].events) == 64
    assert events_to_tune(np.zeros(32, int), "t", "s", "4/4") == (None, "no notes")


def test_a_files_default_track_is_its_melody_not_a_busier_ostinato(tmp_path):
    """Track 0: a 2-pitch ostinato of 32 notes; track 1: a 6-pitch tune of 12 notes; track 2: a 5-pitch line
    of 8. The default is the track with the most notes among those with 5 or more pitches (track 1); with
    no such track, the one with the most notes."""
    import pretty_midi

    def write(parts, name):
        midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)  # a 16th step = 0.125 s
        for pitches, every in parts:
            track = pretty_midi.Instrument(0)
            track.notes = [
                pretty_midi.Note(90, p, i * every * 0.125, (i * every + 1) * 0.125) for i, p in enumerate(pitches)
            ]
            midi.instruments.append(track)
        midi.write(str(tmp_path / name))
        return tmp_path / name

    ostinato, tune, line = ([48, 55] * 16, 2), ([60, 62, 64, 65, 67, 69] * 2, 4), ([72, 74, 76, 77, 79] + [72] * 3, 4)
    events, _ = read_midi(write([ostinato, tune, line], "band.mid"))
    assert (events[events >= 2] + 19).tolist() == tune[0]
    events, _ = read_midi(write([ostinato, ([60, 62] * 3, 4)], "no_tune.mid"))
    assert (events[events >= 2] + 19).tolist() == ostinato[0]  # none has 5 pitches: the most notes
