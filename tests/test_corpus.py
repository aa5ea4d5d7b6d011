"""Extraction of real tunes from the music21 corpus, and the user-MIDI path."""

import logging
import re

import numpy as np
import pretty_midi
import pytest

from ddpm.errors import ConfigError
from ddpm.music import abc, corpus
from ddpm.music.corpus import _parse_file, corpus_root, load_melodies, split_by_title
from ddpm.music.events import MIN_PITCH, NOTE_OFF, NUM_CLASSES, WINDOW_STEPS, events_to_notes, write_midi
from ddpm.music.midi_corpus import midi_tunes
from ddpm.music.tunes import Tune
from tests.helpers import SCALE, write_tracks


@pytest.fixture(scope="module")
def ballads():
    tunes, records = _parse_file(str(corpus_root() / "essenFolksong" / "ballad10.abc"))
    return tunes, {reason for _, reason in records if reason != "ok"}


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
    assert len(tunes) >= 10 and {"meter 3/4", "meter 6/8", "no meter", "meter changes"} <= skipped
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
    _, other = split_by_title(tunes, 0.25, seed=1)  # another seed, another split
    assert {key(t) for t in other} != {key(t) for t in evals}


def test_user_midi_folder_goes_through_the_same_extraction(tmp_path):
    melody = np.zeros(48, dtype=int)
    melody[[0, 4, 8, 16, 24, 40]] = [41, 43, 45, 46, 1, 48]
    write_midi(melody, tmp_path / "a.mid")
    (tmp_path / "broken.mid").write_bytes(b"not midi")
    tunes, skipped = midi_tunes(tmp_path)
    assert skipped == {"unreadable midi": 1} and len(tunes) == 1
    events = tunes[0].events
    assert len(events) == 64 and events[:41].tolist() == melody[:41].tolist()


# Tunes that exercise the rules of the fast ABC path: pickups, repeats with first and second endings,
# ties across bar lines, triplets, chords and chord symbols, grace notes, overfull bars that music21
# re-bars (adding a 6/8 bar to a 2/2 tune: #15), meter changes, free meter, 3/4 and 6/8.
GOLDEN = {
    "essenFolksong/ballad10.abc": [0, 13, 15, 16],
    "oneills1850/0001-0050.abc": [0, 1, 2],
    "miscFolk/americanfifeopus.abc": [0],
    "nottingham-dataset/reelsa-c.abc": [0],
}
MORE_GOLDEN = {
    "essenFolksong/ballad10.abc": [1, 2, 3, 30, 45, 60, 90],
    "oneills1850/0001-0050.abc": [3, 4, 10, 20, 40],
    "miscFolk/americanfifeopus.abc": [5, 10, 16, 30],
    "nottingham-dataset/reelsa-c.abc": [1],
}


def _check_fast_path_matches_music21s_score(name: str, indices: list[int]) -> None:
    # The music21 path (converter-built Score, expandRepeats, stripTies, flatten) is the extraction
    # as it was before the fast path; every meter is kept so 3/4 and 6/8 are compared too.
    from music21.abcFormat import translate

    handlers = abc.read_file(corpus_root() / name)
    for i in indices:
        fast, fast_label, fast_reason = corpus.abc_to_tune(handlers[i], f"t#{i}", "all")
        slow, slow_label, slow_reason = corpus.score_to_tune(translate.abcToStreamScore(handlers[i]), f"t#{i}", "all")
        assert (fast_label, fast_reason) == (slow_label, slow_reason), (name, i)
        if slow is not None:
            assert (fast.title, fast.meter) == (slow.title, slow.meter), (name, i)
            assert fast.events.tolist() == slow.events.tolist(), (name, i, slow.title)


def test_fast_abc_path_matches_music21s_score():
    for name, indices in GOLDEN.items():
        _check_fast_path_matches_music21s_score(name, indices)


@pytest.mark.parametrize("name", sorted(MORE_GOLDEN))
def test_fast_abc_path_matches_music21s_score_on_more_tunes(name):
    _check_fast_path_matches_music21s_score(name, MORE_GOLDEN[name])


def _events(length: int, onsets: dict[int, str | int]) -> list[int]:
    names = {"C": 60, "D": 62, "E": 64, "F": 65, "F#": 66, "G": 67, "A": 69, "B": 71, "c": 72, "d": 74}
    events = np.zeros(length, dtype=int)
    for step, event in onsets.items():
        events[step] = event if isinstance(event, int) else names[event] - MIN_PITCH + 2
    return events.tolist()


WALTZ = "X:1\nT:Waltz\nM:3/4\nL:1/8\nK:C\nE2|C4 D2|E6-|E2 (3GFE D2|C6|]\n"
# The 4-step pickup is padded to a 12-step bar; the tie across the bar line makes one 16-step E;
# the triplet's eighths (4/3 steps) land on round(40 + 4k/3) = 40, 41, 43; the last C sounds to the
# notated end (step 60) and is held through the padding to 64 (the shipped MusicVAE was trained so).
WALTZ_EVENTS = _events(64, {8: "E", 12: "C", 20: "D", 24: "E", 40: "G", 41: "F", 43: "E", 44: "D", 48: "C"})
JIG = "X:2\nT:Jig\nM:6/8\nL:1/8\nK:G\nD|:G2B d2B|c2A F2A|1 G3 G2D:|2 G3 z3||\n"
# 2-step pickup padded to 12; the repeat goes back to the |: (not the pickup); the first ending is
# replaced by the second on the way through; the rest ends the last G.
JIG_EVENTS = _events(
    96,
    {10: "D", 12: "G", 16: "B", 18: "d", 22: "B", 24: "c", 28: "A", 30: "F#", 34: "A", 36: "G", 42: "G", 46: "D"}
    | {48: "G", 52: "B", 54: "d", 58: "B", 60: "c", 64: "A", 66: "F#", 70: "A", 72: "G", 78: NOTE_OFF},
)


def _handler(text: str):
    from music21 import abcFormat

    handler = abcFormat.ABCHandler()
    handler.process(text)
    return handler


@pytest.mark.parametrize(("text", "meter", "expected"), [(WALTZ, "3/4", WALTZ_EVENTS), (JIG, "6/8", JIG_EVENTS)])
def test_triple_meters_land_on_the_16th_grid(text, meter, expected):
    from music21 import converter

    handler = _handler(text)
    fast, label, reason = corpus.abc_to_tune(handler, "x", "all")
    slow, *_ = corpus.score_to_tune(converter.parse(text, format="abc"), "x", "all")
    assert (label, reason, fast.meter) == (meter, "ok", meter)
    assert fast.events.tolist() == expected and slow.events.tolist() == expected
    assert corpus.abc_to_tune(handler, "x", "duple")[1:] == (meter, f"meter {meter}")


def test_first_and_second_endings_are_told_from_a_plain_repeat():
    # The same bar lines with and without endings: the expansion, remembered by repeat structure,
    # must tell them apart (CDEF GA CDEF Bc against CDEF GA CDEF GA Bc).
    from music21 import converter

    endings = "X:1\nT:A\nM:2/4\nL:1/4\nK:C\n|:C D|E F|[1 G A:|[2 B c|]\n"
    plain = endings.replace("[1 ", "").replace("[2 ", "")
    for text, notes in [(endings, 12), (plain, 14), (endings, 12)]:
        fast = corpus.abc_to_tune(_handler(text), "x", "all")[0]
        slow = corpus.score_to_tune(converter.parse(text, format="abc"), "x", "all")[0]
        assert fast.events.tolist() == slow.events.tolist() and (fast.events >= 2).sum() == notes


def test_titles_read_as_music21_stores_them():
    text = "X:1\nT:Grassy Turf, The\nT:Second title\nM:2/4\nL:1/4\nK:C\nC D|E F|]\n"
    assert corpus.abc_to_tune(_handler(text), "x", "all")[0].title == "The Grassy Turf"  # the article moved back
    untitled = text.replace("T:Grassy Turf, The\nT:Second title\n", "")
    assert corpus.abc_to_tune(_handler(untitled), "x#0")[0].title == "x#0"  # no title: the source names it


def test_a_tune_of_rests_is_skipped_under_its_meter():
    rests = "X:1\nT:Rests\nM:2/4\nL:1/8\nK:C\nz4|z4|]\n"
    assert corpus.abc_to_tune(_handler(rests), "x", "all") == (None, "2/4", "no notes")


def _midi_with_meters(path, meters: list[tuple[int, int, float]], seconds: float = 6.0):
    """A one-note-per-beat MIDI file at 120 qpm with the time signatures (numerator, denominator, time)."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(0)
    piano.notes = [pretty_midi.Note(90, 60 + i % 5, 0.5 * i, 0.5 * i + 0.5) for i in range(int(seconds * 2))]
    midi.instruments.append(piano)
    midi.time_signature_changes = [pretty_midi.TimeSignature(n, d, t) for n, d, t in meters]
    midi.write(str(path))


def test_user_midi_in_any_meter(tmp_path):
    _midi_with_meters(tmp_path / "waltz.mid", [(3, 4, 0.0)])
    _midi_with_meters(tmp_path / "jig.mid", [(6, 8, 0.0)])
    _midi_with_meters(tmp_path / "march.mid", [(2, 4, 0.0)])
    _midi_with_meters(tmp_path / "pickup.mid", [(1, 4, 0.0), (3, 4, 0.5)])  # a 1-beat pickup, then 3/4
    _midi_with_meters(tmp_path / "odd.mid", [(7, 32, 0.0)])  # 3.5 steps a bar: off the grid
    tunes, skipped = midi_tunes(tmp_path, meters="duple")
    assert [t.meter for t in tunes] == ["2/4"]
    assert skipped == {"meter 3/4": 2, "meter 6/8": 1, "meter 7/32": 1}
    tunes, skipped = midi_tunes(tmp_path, meters="all")
    by_name = {t.title: t for t in tunes}
    assert sorted(by_name) == ["jig", "march", "pickup", "waltz"] and skipped == {"meter 7/32": 1}
    assert by_name["jig"].meter == "6/8" and by_name["pickup"].meter == "3/4"
    # Beats every 4 steps; the pickup's first beat is padded to a full 12-step bar.
    assert np.flatnonzero(by_name["waltz"].events >= 2)[:4].tolist() == [0, 4, 8, 12]
    assert np.flatnonzero(by_name["pickup"].events >= 2)[:4].tolist() == [8, 12, 16, 20]


def test_report_counts_meters_and_the_cache_key_follows_the_extraction(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    for name, meter in [("a", (3, 4, 0.0)), ("b", (2, 4, 0.0)), ("c", (6, 8, 0.0))]:
        _midi_with_meters(tmp_path / "in" / f"{name}.mid", [meter])
    cache = tmp_path / "cache"
    tunes, report = load_melodies(cache, [], str(tmp_path / "in"), meters="duple")
    assert report["meters"] == {
        "3/4": {"kept": 0, "skipped": 1, "windows": 0},
        "2/4": {"kept": 1, "skipped": 0, "windows": tunes[0].num_windows},
        "6/8": {"kept": 0, "skipped": 1, "windows": 0},
    }
    tunes, report = load_melodies(cache, [], str(tmp_path / "in"), meters="all")
    assert report["tunes"] == 3 and all(row["skipped"] == 0 for row in report["meters"].values())
    assert len(list(cache.glob("*.npz"))) == 2  # one cache per meters option
    again, _ = load_melodies(cache, [], str(tmp_path / "in"), meters="all")
    assert [t.events.tolist() for t in again] == [t.events.tolist() for t in tunes]
    monkeypatch.setattr(corpus, "EXTRACTION_VERSION", corpus.EXTRACTION_VERSION + 1)
    load_melodies(cache, [], str(tmp_path / "in"), meters="all")
    import music21

    monkeypatch.setattr(music21, "__version__", "0.0.0")
    load_melodies(cache, [], str(tmp_path / "in"), meters="all")
    assert len(list(cache.glob("*.npz"))) == 4  # a new extraction version or music21 version: a new cache


def test_bad_meters_option_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"prepare\.corpus\.meters: got 'triple'"):
        load_melodies(tmp_path, ["miscFolk"], meters="triple")


def test_extraction_logs_progress(caplog):
    files = corpus.corpus_files(["ryansMammoth"])[:3]
    with caplog.at_level(logging.INFO, logger="ddpm.progress"):
        tunes, records = corpus.extract_files(files, workers=2, meters="all")
    assert len(records) >= 3 and tunes
    assert any(m.startswith("corpus: parsed 3/3 tunes (100%), 3/3 files") for m in caplog.messages)


def _band(path, parts, meter=(4, 4)):
    """``write_tracks`` of parts (program, is_drum, [(pitch, step)]), each note 2 steps long."""
    tracks = [[(p, s, s + 2) for p, s in notes] for _, _, notes in parts]
    drums = tuple(i for i, (_, drum, _) in enumerate(parts) if drum)
    write_tracks(path, tracks, meter, programs=[program for program, _, _ in parts], drums=drums)


def test_each_track_of_a_midi_file_is_a_melody_from_the_bar_of_its_first_note(tmp_path):
    tune = [(60 + p, 37 + 4 * i) for i, p in enumerate([0, 2, 4, 5, 7, 9])]  # enters in bar 3, step 5 of it
    bass = [(36 + 7 * (i % 2) + i % 5, 8 * i) for i in range(12)]  # more notes, from step 0
    parts = [
        (0, False, tune),
        (33, False, bass),
        (40, False, tune),  # strings doubling the tune: left out
        (48, False, [(60, 16 * i) for i in range(4)] + [(64, 16 * i + 8) for i in range(4)]),  # 2 pitches: no melody
        (0, True, [(36, 4 * i) for i in range(40)]),  # drums: never read
    ]
    _band(tmp_path / "band.mid", parts)
    tunes, skipped = midi_tunes(tmp_path, tracks="each")
    assert skipped == {"doubled track": 1, "fewer than 5 pitches": 1}
    assert [t.title for t in tunes] == ["band", "band"]  # one title: both tracks land on one side of the split
    melody, bass_tune = tunes  # in file order, each named by its place among the file's pitched tracks
    assert [t.source.rsplit("#", 1)[1] for t in tunes] == ["0", "1"]
    expected = np.zeros(32, dtype=int)
    expected[[5, 9, 13, 17, 21, 25]] = np.array([60, 62, 64, 65, 67, 69]) - MIN_PITCH + 2
    expected[[7, 11, 15, 19, 23]] = NOTE_OFF  # the last note lasts to the window's end, as in every tune
    assert melody.events.tolist() == expected.tolist()  # the first 32 steps, 2 bars of silence, are cut
    assert np.flatnonzero(bass_tune.events >= 2)[:3].tolist() == [0, 8, 16]
    tunes, skipped = midi_tunes(tmp_path, tracks="longest")
    assert len(tunes) == 1 and tunes[0].events.tolist() == bass_tune.events.tolist() and skipped == {}


def test_the_midi_tracks_option_is_checked_and_keys_the_cache_and_the_spec(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _band(
        folder / "duo.mid",
        [(0, False, [(60 + i % 7, 4 * i) for i in range(9)]), (1, False, [(48 + i, 8 * i) for i in range(5)])],
    )
    cache = tmp_path / "cache"
    each, _ = load_melodies(cache, [], str(folder), midi_tracks="each")
    longest, _ = load_melodies(cache, [], str(folder), midi_tracks="longest")
    assert (len(each), len(longest)) == (2, 1) and len(list(cache.glob("*.npz"))) == 2
    with pytest.raises(
        ConfigError, match=r"prepare\.corpus\.midi_tracks: got 'all'; expected one of \['each', 'longest'\]"
    ):
        corpus.Corpus([], str(folder), midi_tracks="all")
    specs = [corpus.Corpus([], str(folder), midi_tracks=t).spec() for t in ("each", "longest")]
    assert specs[0] != specs[1]  # latents made from the other reading are stale
    folk = corpus.Corpus(["miscFolk"]).spec()
    assert "midi_tracks" not in folk  # without a MIDI folder the option changes nothing: old manifests stay valid


def test_a_midi_folder_is_read_in_worker_processes_with_progress(tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    _band(
        folder / "a.mid",
        [(0, False, [(60 + i % 7, 4 * i) for i in range(9)]), (1, False, [(48 + i, 8 * i) for i in range(5)])],
    )
    _midi_with_meters(folder / "b.mid", [(2, 4, 0.0)])
    _midi_with_meters(folder / "c.mid", [(3, 4, 0.0)])  # skipped: 3/4
    alone, skipped = midi_tunes(folder)
    with caplog.at_level(logging.INFO, logger="ddpm.progress"):
        pooled, report = load_melodies(tmp_path / "cache", [], str(folder), workers=2)
    assert re.search(r"corpus: parsed 3/3 MIDI files \(100%\), \d+ s", caplog.text)
    assert [(t.source, t.events.tolist()) for t in pooled] == [(t.source, t.events.tolist()) for t in alone]
    assert len(alone) == 3 and skipped == report["skipped"] == {"meter 3/4": 1}


def test_a_folder_with_no_usable_melody_says_why_and_what_keeps_them(tmp_path):
    (tmp_path / "in").mkdir()
    _midi_with_meters(tmp_path / "in" / "waltz.mid", [(3, 4, 0.0)])
    message = r"^prepare\.corpus: no usable melodies .* skipped \{'meter 3/4': 1\}; "
    message += r"prepare\.corpus\.meters=all keeps every meter$"
    with pytest.raises(ConfigError, match=message):
        load_melodies(tmp_path / "cache", [], str(tmp_path / "in"))
    tunes, _ = load_melodies(tmp_path / "cache", [], str(tmp_path / "in"), meters="all")
    assert [t.meter for t in tunes] == ["3/4"]


def test_the_meters_hint_names_meters_all_only_where_it_helps():
    assert (
        corpus.meters_hint({"meter 3/4": 2, "no notes": 1}, "duple") == "; prepare.corpus.meters=all keeps every meter"
    )
    assert corpus.meters_hint({"meter changes": 3, "no meter": 1}, "duple") == ""  # "all" keeps one meter per tune
    assert corpus.meters_hint({"meter 7/32": 1}, "all") == ""


def test_longest_takes_the_track_with_most_notes_among_those_that_are_melodies(tmp_path):
    tune = [(60 + p, 4 * i) for i, p in enumerate([0, 2, 4, 5, 7, 9, 11, 12])]
    ostinato = [(36 + 7 * (i % 2), 2 * i) for i in range(16)]  # more notes, 2 pitches: no melody
    _band(tmp_path / "song.mid", [(33, False, ostinato), (0, False, tune)])
    tunes, skipped = midi_tunes(tmp_path, tracks="longest")
    assert [t.source.rsplit("#", 1)[1] for t in tunes] == ["1"] and skipped == {}
    _band(tmp_path / "song.mid", [(33, False, ostinato)])  # no melody at all: the reason is counted
    assert midi_tunes(tmp_path, tracks="longest") == ([], {"fewer than 5 pitches": 1})


# The fast ABC reader: each rule against music21's own parse, and against its events (pinned by
# session 29's mutation audit, as the sections below are).

# The expected events follow music21's reading, quirks included (the bass clef, a fingering diagram): the fast
# reader must equal it, so a music21 release that reads these differently fails here first.
HEAD = "X:1\nT:t\nM:2/4\nL:1/8\n"
ABC_CASES = {
    # A note tied across the line of an overfull bar (re-barred at 2/4) and on into the next note: one E.
    "tie across a re-barred line": ("K:C\nC2 E4- E2|E2 F2|G2 A2|]", {0: 60, 4: 64, 16: 64, 20: 65, 24: 67, 28: 69}),
    # A grace note between two tied notes does not break the tie chain: one C of three quarters.
    "tie over a grace note": ("K:C\nC2- {D}C2- C2 D2|]", {0: 60, 12: 62}),
    # A tie into another pitch (after a grace note) ties nothing: E is struck.
    "tie into another pitch": ("K:C\nC2- {D}E2 F2 G2|]", {0: 60, 4: 64, 8: 65, 12: 67}),
    # A dangling tie before two equal chords: the second chord is struck, not merged into the C.
    "dangling tie before chords": (
        "K:C\nC- [CE] [CE] D|E F G A|]",
        {0: 60, 2: 64, 4: 64, 6: 62, 8: 64, 10: 65, 12: 67, 14: 69},
    ),
    # Chords in a triplet last a third of a quarter each (the top note sounds).
    "triplet of chords": ("K:C\n(3[CE][DF][EG] c2|d4|]", {0: 64, 1: 65, 3: 67, 4: 72, 8: 74}),
    # music21 reads a bass clef as two octaves down, in a tune without bar lines ...
    "bass clef, no bars": ("K:C bass\nC2 D2 E2 F2 G2 A2", {0: 36, 4: 38, 8: 40, 12: 41, 16: 43, 20: 45}),
    # ... and as nothing where later bars do not repeat it (the last bar's clef wins).
    "bass clef in the header only": ("K:C bass\nC2 D2|E2 F2|G2 A2|]", {0: 60, 4: 62, 8: 64, 12: 65, 16: 67, 20: 69}),
    # A chord symbol starting with '>' (a fingering diagram) drops its note; the next takes its place.
    "fingering diagram": ('K:C\nC2 D2|">x"E2 F2|G2 A2|]', {0: 60, 4: 62, 8: 65, 12: 67, 16: 69}),
}


@pytest.mark.parametrize("name", sorted(ABC_CASES))
def test_abc_reader_rules_match_music21_and_their_events(name):
    from music21 import converter

    body, onsets = ABC_CASES[name]
    text = HEAD + body + "\n"
    fast, label, reason = corpus.abc_to_tune(_handler(text), "x", "all")
    slow, *_ = corpus.score_to_tune(converter.parse(text, format="abc"), "x", "all")
    expected = np.zeros(32, dtype=int)
    for step, pitch in onsets.items():
        expected[step] = pitch - MIN_PITCH + 2
    assert (label, reason) == ("2/4", "ok")
    assert fast.events.tolist() == slow.events.tolist()
    assert fast.events.tolist() == expected.tolist()


# A folder of the user's MIDI files.


def test_longest_counts_notes_not_note_offs(tmp_path):
    """tracks=longest keeps the melody with the most notes: 8 legato notes beat 6 detached ones, whose
    6 note-offs are no notes."""
    from ddpm.music.midi_corpus import midi_tunes

    detached = [(p, 4 * i, 4 * i + 1) for i, p in enumerate(SCALE[:6])]  # 6 notes, each followed by silence
    legato = [(p, 2 * i, 2 * i + 2) for i, p in enumerate(SCALE)]  # 8 notes, no gaps
    write_tracks(tmp_path / "duo.mid", [detached, legato])
    tunes, skipped = midi_tunes(tmp_path, tracks="longest")
    assert skipped == {} and [t.source.rsplit("#", 1)[1] for t in tunes] == ["1"]


def test_midi_folders_are_read_with_their_subfolders_and_the_digest_reads_the_bytes(tmp_path):
    from ddpm.music.midi_corpus import midi_digest, midi_files, midi_tunes

    write_tracks(tmp_path / "a.mid", [[(p, 2 * i, 2 * i + 2) for i, p in enumerate(SCALE)]])
    write_tracks(tmp_path / "more" / "b.mid", [[(p, 2 * i, 2 * i + 2) for i, p in enumerate(SCALE[::-1])]])
    assert [p.relative_to(tmp_path).as_posix() for p in midi_files(tmp_path)] == ["a.mid", "more/b.mid"]
    assert sorted(t.title for t in midi_tunes(tmp_path)[0]) == ["a", "b"]
    before = midi_digest(tmp_path)
    blob = bytearray((tmp_path / "more" / "b.mid").read_bytes())
    blob[blob.index(bytes([0x90, 72]), 0) + 1] = 73  # the first note C5 -> C#5: same size, other bytes
    (tmp_path / "more" / "b.mid").write_bytes(bytes(blob))
    assert midi_digest(tmp_path) != before  # a changed file is extracted again
