"""Extraction of real tunes from the music21 corpus, and the user-MIDI path."""

import numpy as np
import pytest

from ddpm.music.corpus import Tune, _parse_file, corpus_root, midi_tunes, split_by_title
from ddpm.music.events import NOTE_OFF, NUM_CLASSES, WINDOW_STEPS, events_to_notes, write_midi


@pytest.fixture(scope="module")
def ballads():
    tunes, skipped = _parse_file(str(corpus_root() / "essenFolksong" / "ballad10.abc"))
    return tunes, skipped


def test_exact_events_of_a_short_essen_tune(ballads):
    # "Braut - Werbung (Hildesage)", M:2/4 L:1/16 K:G:  GA | B2B2B2A2 | B2A2G2 c2 | B2A2G2E2 |
    # F2E2D4 G2D2G2A2 | B4BGc2 | B4z2.  The 2-step pickup is padded to a full 8-step bar.
    tune = next(t for t in ballads[0] if t.title.startswith("Braut - Werbung"))
    G, A, B, c, E, Fs, D = 48, 50, 52, 53, 45, 47, 43  # class = MIDI pitch - 19 (G4 = 67, ...)
    expected = np.zeros(64, dtype=int)
    onsets = {
        6: G,
        7: A,
        8: B,
        10: B,
        12: B,
        14: A,
        16: B,
        18: A,
        20: G,
        22: c,
        24: B,
        26: A,
        28: G,
        30: E,
        32: Fs,
        34: E,
        36: D,
        40: G,
        42: D,
        44: G,
        46: A,
        48: B,
        52: B,
        53: G,
        54: c,
        56: B,
        60: NOTE_OFF,
    }
    for step, event in onsets.items():
        expected[step] = event
    assert tune.meter == "2/4" and tune.events.tolist() == expected.tolist()


def test_grid_and_monophony_invariants(ballads):
    tunes, skipped = ballads
    assert len(tunes) >= 10 and sum(skipped.values()) >= 1
    for tune in tunes:
        assert len(tune.events) % WINDOW_STEPS == 0 and tune.num_windows >= 1
        assert tune.events.min() >= 0 and tune.events.max() < NUM_CLASSES
        assert WINDOW_STEPS % {"2/4": 8, "4/4": 16, "2/2": 16, "4/2": 32, "4/8": 8}[tune.meter] == 0
        notes = events_to_notes(tune.events)
        assert all(a.end <= b.start for a, b in zip(notes, notes[1:]))


def test_split_by_title_is_disjoint_and_deterministic():
    tunes = [Tune(f"Tune {i % 40}", f"x#{i}", "4/4", np.zeros(32, np.int8)) for i in range(200)]
    tunes.append(Tune("TUNE 3!", "y#0", "4/4", np.zeros(32, np.int8)))  # same title, other spelling
    train, evals = split_by_title(tunes, 0.25, seed=0)
    key = lambda t: "".join(ch for ch in t.title.lower() if ch.isalnum())  # noqa: E731
    assert {key(t) for t in train}.isdisjoint({key(t) for t in evals})
    assert len(train) + len(evals) == len(tunes) and 0 < len(evals) < len(tunes)
    again_train, _ = split_by_title(tunes, 0.25, seed=0)
    assert [t.source for t in again_train] == [t.source for t in train]


def test_user_midi_folder_goes_through_the_same_extraction(tmp_path):
    melody = np.zeros(48, dtype=int)
    melody[[0, 4, 8, 16, 24, 40]] = [41, 43, 45, 46, 1, 48]
    write_midi(melody, tmp_path / "a.mid")
    (tmp_path / "broken.mid").write_bytes(b"not midi")
    tunes, skipped = midi_tunes(tmp_path)
    assert skipped == {"unreadable midi": 1} and len(tunes) == 1
    events = tunes[0].events
    assert len(events) == 64 and events[:41].tolist() == melody[:41].tolist()
