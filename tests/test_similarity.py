"""Framewise self-similarity (ddpm/music/similarity.py): exact OA, bucketing, Consistency/Variance."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from ddpm.music.events import MIN_PITCH, NOTE_OFF
from ddpm.music.similarity import (
    bootstrap_consistency_variance,
    consistency_variance,
    frame_gaussians,
    overlap_area,
    piece_overlap,
    piece_overlaps,
)


def numeric_overlap(m1, s1, m2, s2) -> float:
    f = lambda x: min(stats.norm.pdf(x, m1, s1), stats.norm.pdf(x, m2, s2))  # noqa: E731
    lo, hi = min(m1 - 12 * s1, m2 - 12 * s2), max(m1 + 12 * s1, m2 + 12 * s2)
    points = np.linspace(lo, hi, 41)[1:-1]
    return integrate.quad(f, lo, hi, points=points, limit=400)[0]


def test_overlap_identical_is_one():
    assert overlap_area(60, 2, 60, 2) == pytest.approx(1.0, abs=1e-12)
    assert overlap_area(3, 1e-6, 3, 1e-6) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("delta,sigma", [(0.5, 1.0), (3.0, 2.0), (10.0, 1.5)])
def test_overlap_equal_variance_closed_form(delta, sigma):
    expected = 2 * stats.norm.cdf(-abs(delta) / (2 * sigma))
    assert overlap_area(60, sigma, 60 + delta, sigma) == pytest.approx(expected, rel=1e-10)
    assert overlap_area(60 + delta, sigma, 60, sigma) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("args", [(60, 2, 60, 3), (0, 1, 2, 0.5), (62, 0.3, 64, 4), (5, 1, -3, 2.5)])
def test_overlap_unequal_variance_matches_integration(args):
    assert overlap_area(*args) == pytest.approx(numeric_overlap(*args), abs=1e-7)
    m1, s1, m2, s2 = args
    assert overlap_area(m2, s2, m1, s1) == pytest.approx(overlap_area(*args), abs=1e-12)  # symmetric


def test_overlap_exact_beats_single_crossing():
    # N(60, 4) vs N(60, 9) (variances): exact 0.806; the single-crossing approximation says 0.903.
    assert overlap_area(60, 2, 60, 3) == pytest.approx(0.8064, abs=1e-4)


def bars_melody(bar_pitches: list[list[int]], note_steps: int | list[int] = 4) -> np.ndarray:
    """One bar (16 steps) per entry; each pitch lasts ``note_steps`` steps (per bar if a list); [] is silent."""
    events = np.zeros(16 * len(bar_pitches), np.int64)
    for b, pitches in enumerate(bar_pitches):
        steps = note_steps[b] if isinstance(note_steps, list) else note_steps
        for i, p in enumerate(pitches):
            events[16 * b + i * steps] = p - MIN_PITCH + 2
        if pitches:
            end = 16 * b + len(pitches) * steps
            if end < len(events):
                events[end] = NOTE_OFF
    return events


def test_frames_bucket_by_onset_with_hop_two():
    # 8 bars: bar k holds four quarter notes of pitch 60 + k. Frames: bars 0-3, 2-5, 4-7.
    melody = bars_melody([[60 + k] * 4 for k in range(8)])
    frames = frame_gaussians(melody)
    assert len(frames) == 3
    for f, first in zip(frames, (0, 2, 4)):
        pitches = np.repeat(60 + np.arange(first, first + 4), 4)
        (pm, ps), (dm, ds) = f
        assert pm == pytest.approx(pitches.mean()) and ps == pytest.approx(pitches.std(), abs=1e-5)
        assert dm == pytest.approx(4.0) and ds == pytest.approx(0.0, abs=1e-5)
    # a 32-bar melody has 15 frames
    assert len(frame_gaussians(bars_melody([[60]] * 32))) == 15


def test_note_counts_in_the_bar_of_its_onset():
    # a whole-bar-long note starting in bar 1 belongs to bar 1 only: frame 0 (bars 0-3) holds both notes
    events = np.zeros(16 * 6, np.int64)
    events[0] = 62 - MIN_PITCH + 2  # bar 0, lasts to step 24 (into bar 1)
    events[24] = 70 - MIN_PITCH + 2  # bar 1, lasts to the end of bar 5
    frames = frame_gaussians(events)
    (pm, _), (dm, _) = frames[0]
    assert pm == pytest.approx(66.0) and dm == pytest.approx((24 + 72) / 2)
    assert frames[1] is None  # bars 2-5: no onset -> empty


def test_empty_frames_are_skipped_and_silent_piece_is_unscorable():
    melody = bars_melody([[60] * 4] * 4 + [[]] * 4 + [[60] * 4] * 4)  # 12 bars: frames 0-3, 2-5, 4-7, 6-9, 8-11
    frames = frame_gaussians(melody)
    assert frames[2] is None
    assert np.isfinite(piece_overlap(melody)).all()
    assert np.isnan(piece_overlap(np.zeros(16 * 8, np.int64))).all()


def phrase_melodies(n: int, seed: int = 0) -> np.ndarray:
    """32-bar melodies whose register and rhythm drift slowly, each its own way: adjacent frames similar."""
    rng = np.random.default_rng(seed)
    melodies = []
    for _ in range(n):
        base, drift = rng.integers(55, 70), rng.normal(0, 0.4)
        split = rng.integers(4, 28)  # quarter notes before this bar, eighths (or the reverse) after
        steps = [4] * split + [2] * (32 - split) if rng.random() < 0.5 else [2] * split + [4] * (32 - split)
        bars = [[int(base + drift * b + rng.integers(-2, 3)) for _ in range(16 // steps[b])] for b in range(32)]
        melodies.append(bars_melody(bars, note_steps=steps))
    return np.stack(melodies)


def test_consistency_variance_of_a_set_against_itself_is_one():
    overlaps = piece_overlaps(phrase_melodies(40))
    scores = consistency_variance(overlaps, overlaps)
    assert all(v == pytest.approx(1.0) for v in scores.values())


def test_shuffled_bars_score_below_one():
    melodies = phrase_melodies(40)
    rng = np.random.default_rng(1)
    shuffled = np.stack([m.reshape(32, 16)[rng.permutation(32)].reshape(-1) for m in melodies])
    scores = consistency_variance(piece_overlaps(shuffled), piece_overlaps(melodies))
    assert all(v < 0.99 for v in scores.values())  # measured: 0.98, 0.54, 0.82, 0.0
    assert scores["duration_consistency"] < 0.9 and scores["pitch_variance"] < 0.9


def test_consistency_and_variance_closed_form():
    gt = np.array([[0.8, 0.6], [0.6, 0.4]])  # mu (0.7, 0.5), var (0.01, 0.01)
    other = np.array([[0.7, 0.5], [0.7, 0.5]])  # mu equal, var 0
    scores = consistency_variance(other, gt)
    assert scores["pitch_consistency"] == pytest.approx(1.0)
    assert scores["pitch_variance"] == pytest.approx(0.0)
    wider = np.array([[0.75, 0.55], [0.55, 0.35]])  # mu (0.65, 0.45), var 0.01
    scores = consistency_variance(wider, gt)
    assert scores["pitch_consistency"] == pytest.approx(1 - 0.05 / 0.7)
    assert scores["duration_consistency"] == pytest.approx(1 - 0.05 / 0.5)
    assert scores["duration_variance"] == pytest.approx(1.0)


def test_bootstrap_interval_brackets_the_estimate():
    gt = piece_overlaps(phrase_melodies(60, seed=2))
    other = piece_overlaps(phrase_melodies(60, seed=3))
    point = consistency_variance(other, gt)
    interval = bootstrap_consistency_variance(other, gt, rounds=200)
    for key, (low, high) in interval.items():
        assert low <= high
        assert low - 1e-9 <= point[key] <= high + 1e-9 or math.isclose(point[key], high)


def test_repetition_finds_copied_bars_and_the_loop_period():
    from ddpm.music.scoring import melody_statistics, repetition

    rng = np.random.default_rng(0)
    bars = rng.integers(2, 40, size=(32, 16))  # an onset every step: no two bars equal by chance
    assert repetition(bars.reshape(-1)) == (0.0, 0)
    looped = np.resize(bars[:6], (32, 16))  # a 6-bar tune played again to fill 32 bars
    assert repetition(looped.reshape(-1)) == (pytest.approx(26 / 32), 6)
    silent_start = bars.copy()
    silent_start[:4] = NOTE_OFF  # silent bars are neither counted nor copies
    silent_start[10] = silent_start[5]
    assert repetition(silent_start.reshape(-1)) == (pytest.approx(1 / 28), 0)
    late = bars.copy()
    late[29:] = late[:3]  # repeats only after 29 bars: 3 bars, under one frame: not a loop
    assert repetition(late.reshape(-1))[1] == 0
    late[28:] = late[:4]  # after 28 bars, one whole frame: a loop
    assert repetition(late.reshape(-1))[1] == 28
    stats = melody_statistics(np.stack([bars.reshape(-1), looped.reshape(-1)]))
    assert stats["loops"] == 0.5 and stats["repeated_bars"] == pytest.approx(26 / 64)


def test_repetition_compares_notes_not_event_strings(tmp_path):
    """Bars and loops are compared by their notes (onset, pitch, length cut at the bar or stretch end), so
    how a stretch before a bar's first onset is written does not count, and a MIDI round trip keeps both."""
    from ddpm.music.events import pad_with_rest, read_midi, write_midi
    from ddpm.music.scoring import repetition

    rng = np.random.default_rng(1)
    bars = rng.integers(2, 40, size=(32, 16))
    bars[:, 8:] = 0
    bars[:, 8] = NOTE_OFF  # each bar: 8 onsets, then rest
    copy = bars.copy()
    copy[7] = copy[3]
    copy[7, 12] = NOTE_OFF  # a second note-off in the same rest: the same notes
    assert repetition(copy.reshape(-1))[0] == pytest.approx(1 / 32)
    copy[7, 8] = 0  # its last onset now lasts to the bar's end: another note
    assert repetition(copy.reshape(-1))[0] == 0
    tune = bars[:5].copy()
    tune[0, 0], tune[4, 8:] = NOTE_OFF, 0  # opens with an off in silence; its last note is held to its end
    looped = np.resize(tune, (32, 16))  # from the second copy on that off ends the held note: a loop all the same
    assert repetition(looped.reshape(-1))[1] == 5
    path = write_midi(looped.reshape(-1), tmp_path / "loop.mid")  # a MIDI file keeps the notes, not the offs
    back = pad_with_rest(read_midi(path)[0], 512)
    assert back.tolist() != looped.reshape(-1).tolist()
    assert repetition(back) == repetition(looped.reshape(-1)) == (pytest.approx(27 / 32), 5)
    pickup = bars[:6].copy()
    pickup[0, :4], pickup[5, 8:] = 0, 0  # a pickup rest that, played again, holds the last note over it
    assert repetition(np.resize(pickup, (32, 16)).reshape(-1))[1] == 6
    four = pickup[:4].copy()
    four[3, 8:] = 0  # 8 copies: the melody ends on a held note, which its copies hold over the next pickup
    assert repetition(np.resize(four, (32, 16)).reshape(-1)) == (pytest.approx(28 / 32), 4)
    shorter = np.resize(pickup, (32, 16))
    shorter[30, 2] = NOTE_OFF  # the last copy's held-over note ends inside its pickup: a shorter note, no loop
    assert repetition(shorter.reshape(-1)) == (pytest.approx(26 / 32), 0)  # its bars still copy note for note


def test_adjacent_frames_are_the_ones_compared():
    # bar k: four quarter notes of pitch 60 + k. Frames 0 and 1 (bars 0-3, 2-5) are N(61.5, 1.25) and N(63.5, 1.25):
    # equal variances, so their OA is 2 Phi(-2 / (2 sqrt 1.25)); frames 0 and 2 would give 2 Phi(-4 / (2 sqrt 1.25))
    melody = bars_melody([[60 + k] * 4 for k in range(6)])
    pitch, duration = piece_overlap(melody)
    assert pitch == pytest.approx(2 * stats.norm.cdf(-1 / math.sqrt(1.25)), abs=1e-4)  # 0.3711
    assert duration == pytest.approx(1.0)


def test_variance_is_zero_past_twice_the_ground_truths_and_sets_of_other_sizes_compare_fairly():
    gt = np.array([[0.6, 0.6], [0.8, 0.8]])  # sigma2 0.01
    wide = np.array([[0.5, 0.5], [0.9, 0.9]])  # sigma2 0.04: 1 - 3 < 0
    assert consistency_variance(wide, gt)["pitch_variance"] == 0.0
    four = np.array([[0.6, 0.6], [0.8, 0.8], [0.6, 0.6], [0.8, 0.8]])  # the same spread, twice the pieces
    assert consistency_variance(four, gt)["pitch_variance"] == pytest.approx(1.0)  # population variance


def test_bootstrap_is_the_percentile_interval_of_both_sets_resampled():
    gt = piece_overlaps(phrase_melodies(30, seed=4))
    other = piece_overlaps(phrase_melodies(30, seed=5))
    interval = bootstrap_consistency_variance(other, gt, rounds=50, seed=3)
    rng, draws = np.random.default_rng(3), []
    for _ in range(50):  # the same draws, in the same order: the set, then the ground truth
        a = other[rng.integers(0, 30, 30)]
        draws.append(consistency_variance(a, gt[rng.integers(0, 30, 30)])["duration_variance"])
    assert interval["duration_variance"] == pytest.approx((np.percentile(draws, 2.5), np.percentile(draws, 97.5)))
    constant = np.full((30, 2), 0.5)  # resampling it changes nothing: a width > 0 comes from the ground truth's
    low, high = bootstrap_consistency_variance(constant, gt, rounds=50)["pitch_consistency"]
    assert high > low


def test_melody_statistics_closed_forms():
    from ddpm.music.scoring import MelodySet, melody_statistics, score_set

    quarters = bars_melody([[60, 62, 64, 65]] * 32)  # C major, four notes a bar
    g_major = bars_melody([[67, 69, 71, 72], [74, 76, 78, 79]] * 16)  # G major with its F sharp
    c_only, g_only = bars_melody([[60] * 4] * 32), bars_melody([[67] * 4] * 32)
    stats_ = melody_statistics(np.stack([quarters, g_major]))
    assert stats_["notes_per_bar"] == pytest.approx(4.0) and stats_["out_of_key"] == 0.0
    assert melody_statistics(np.stack([bars_melody([[60, 66, 64, 65]] * 32)]))["out_of_key"] == pytest.approx(0.25)
    gt = MelodySet("gt", np.stack([c_only] * 3))
    gt_stats = melody_statistics(gt.melodies)
    row = score_set(MelodySet("g", np.stack([g_only] * 3)), gt, piece_overlaps(gt.melodies), gt_stats, [0], 10)
    assert row["pc_distance"] == pytest.approx(1.0)  # disjoint pitch classes: total variation 1
    assert row["notes_per_bar"] == pytest.approx(4.0) and row["unscorable"] == 0
