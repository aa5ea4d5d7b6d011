"""The helper behind benchmarks/note_density.py (the README's notes per bar at each link of the chain)."""

import numpy as np

from benchmarks.note_density import bar_counts, long_share
from ddpm.music.events import Note, notes_to_events


def test_bar_counts_puts_each_note_in_the_bar_of_its_onset():
    """Bar 0: four quarters; bar 1: one whole note; bar 2: rest; bar 3: a note tied over from bar 2's
    last 16th and eight 16ths: notes count where they start, not where they sound."""
    notes = [Note(60 + i, 4 * i, 4 * i + 4) for i in range(4)] + [Note(67, 16, 32), Note(69, 47, 49)]
    notes += [Note(70 + i % 3, 49 + i, 50 + i) for i in range(8)]
    melody = notes_to_events(notes, 64)
    counts = bar_counts(np.stack([melody, np.zeros(64, np.int64)]))
    assert counts.tolist() == [[4, 1, 1, 8], [0, 0, 0, 0]]


def test_long_share_counts_notes_of_a_bar_or_more():
    """Three notes: 4, 16 and 17 steps (the last ended by the sequence's end): two of three last a bar."""
    melody = notes_to_events([Note(60, 0, 4), Note(62, 4, 20), Note(64, 47, 64)], 64)
    assert long_share(melody[None]) == 2 / 3 and long_share(np.zeros((2, 64), np.int64)) == 0.0
