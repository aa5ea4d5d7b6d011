"""Score sets of melodies against ground truth: the rows of ``evaluate.py``'s table.

Each set is scored with the framewise self-similarity of Mittal et al. (``similarity.py``:
Consistency and Variance for pitch and duration, with bootstrap intervals), latent Frechet
distance and MMD in the active dimensions (``ddpm.metrics``), and three melody statistics: notes
per bar, the total-variation distance between pitch-class histograms, and the share of notes
outside each melody's prevailing major key; and two measures of literal repetition, which the OA
figures reward: the share of bars that copy an earlier bar of the same melody note for note, and the
share of melodies that are a loop (the whole melody repeats itself after ``p <= LOOP_MAX_BARS`` bars).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ddpm.io.atomic import atomic_path, atomic_write_text
from ddpm.metrics import frechet_distance, mmd_rbf
from ddpm.music.events import events_to_notes
from ddpm.music.similarity import bootstrap_consistency_variance, consistency_variance, piece_overlaps

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
OA_COLUMNS = ("pitch_consistency", "pitch_variance", "duration_consistency", "duration_variance")
MMD_FRAMES = 1024  # frames per set in the MMD (its kernel matrix is quadratic in this)
STEPS_PER_BAR = 16
LOOP_MAX_BARS = 28  # a loop repeats at least one 4-bar frame


def repetition(melody: np.ndarray) -> tuple[float, int]:
    """(share of the bars with an onset that equal an earlier bar, the loop period in bars or 0).

    Bars are compared note for note, as the OA metric reads them: the notes whose onset is in the bar, each
    with its pitch, its onset in the bar and its length cut at the bar's end. So how a stretch before the
    first onset is written (a rest, a note held from before, a note-off in silence, which a MusicVAE may
    decode and a MIDI file cannot keep) does not tell two bars apart. The period is the smallest
    ``p <= LOOP_MAX_BARS`` with the notes from bar p on those from bar 0, each cut at the same distance from
    its stretch's end: a looped short tune (the prepare stage fills 32 bars so) has one, most composed 32
    bars do not.
    """
    notes = np.array([(n.start, n.pitch, n.end) for n in events_to_notes(melody)], np.int64).reshape(-1, 3)
    start, pitch, end = notes.T
    bar = start // STEPS_PER_BAR
    length = np.minimum(end, (bar + 1) * STEPS_PER_BAR) - start
    bars = [np.stack([start - k * STEPS_PER_BAR, pitch, length])[:, bar == k].tobytes() for k in np.unique(bar)]
    copies = len(bars) - len(set(bars))
    steps = len(melody)

    def repeats_after(shift: int) -> bool:
        head = notes[start < steps - shift]
        head[:, 2] = np.minimum(head[:, 2], steps - shift)  # cut where the shifted stretch ends
        return np.array_equal(head, notes[start >= shift] - [shift, 0, shift])

    period = next((p for p in range(1, LOOP_MAX_BARS + 1) if repeats_after(p * STEPS_PER_BAR)), 0)
    return copies / max(len(bars), 1), period


@dataclass
class MelodySet:
    """A row of the table: melodies ``[n, steps]`` and, when they came from latents, those ``[n, frames, D]``."""

    name: str
    melodies: np.ndarray
    latents: np.ndarray | None = None
    note: str = ""
    repeats: list[dict] = field(default_factory=list)  # scores of repeated draws (real vs real)


def melody_statistics(melodies: np.ndarray) -> dict:
    """Notes per bar, out-of-key share (means over melodies) and the pooled pitch-class histogram."""
    density, out_of_key, pc_total = [], [], np.zeros(12)
    copied, loops = zip(*map(repetition, melodies)) if len(melodies) else ((), ())
    for melody in melodies:
        pitches = np.array([n.pitch for n in events_to_notes(melody)], np.int64)
        density.append(len(pitches) / (len(melody) / 16))
        if len(pitches) == 0:
            continue
        pc = np.bincount(pitches % 12, minlength=12).astype(float)
        out_of_key.append(1 - max(pc[(MAJOR + k) % 12].sum() for k in range(12)) / pc.sum())
        pc_total += pc
    return {
        "notes_per_bar": float(np.mean(density)) if density else 0.0,
        "out_of_key": float(np.mean(out_of_key)) if out_of_key else 0.0,
        "pc_hist": pc_total / max(pc_total.sum(), 1.0),
        "repeated_bars": float(np.mean(copied)) if copied else 0.0,
        "loops": float(np.mean(np.array(loops) > 0)) if loops else 0.0,
    }


def _latent_scores(latents: np.ndarray | None, reference: np.ndarray, dims: list[int], seed: int) -> dict:
    if latents is None:
        return {"latent_fd": None, "latent_mmd": None}
    a = reference[..., dims].reshape(-1, len(dims))
    b = np.asarray(latents)[..., dims].reshape(-1, len(dims))
    rng = np.random.default_rng(seed)
    pick = lambda x: x[rng.permutation(len(x))[:MMD_FRAMES]]  # noqa: E731
    return {"latent_fd": frechet_distance(a, b), "latent_mmd": mmd_rbf(pick(a), pick(b))}


def score_set(
    melody_set: MelodySet,
    gt: MelodySet,
    gt_overlaps: np.ndarray,
    gt_stats: dict,
    dims: list[int],
    rounds: int = 1000,
    seed: int = 0,
) -> dict:
    """One row: the four OA figures with bootstrap intervals, latent FD/MMD, melody statistics."""
    overlaps = piece_overlaps(melody_set.melodies)
    stats = melody_statistics(melody_set.melodies)
    row = {"set": melody_set.name, "n": len(melody_set.melodies), "note": melody_set.note}
    row |= consistency_variance(overlaps, gt_overlaps)
    row["interval"] = bootstrap_consistency_variance(overlaps, gt_overlaps, rounds, seed)
    row["unscorable"] = int(np.isnan(overlaps).any(1).sum())
    row |= _latent_scores(melody_set.latents, gt.latents, dims, seed)
    row["notes_per_bar"] = stats["notes_per_bar"]
    row["pc_distance"] = float(0.5 * np.abs(stats["pc_hist"] - gt_stats["pc_hist"]).sum())
    row["out_of_key"] = stats["out_of_key"]
    row["repeated_bars"], row["loops"] = stats["repeated_bars"], stats["loops"]
    row["mean_oa"] = np.nanmean(overlaps, 0).tolist()
    row["overlaps"] = [[None if np.isnan(v) else float(v) for v in o] for o in overlaps]  # JSON has no NaN
    if melody_set.repeats:
        for key in OA_COLUMNS:
            values = [r[key] for r in melody_set.repeats]
            row[f"{key}_spread"] = [float(np.mean(values)), float(np.std(values)), float(np.min(values))]
        row["draws"] = [{key: float(r[key]) for key in OA_COLUMNS} for r in melody_set.repeats]
    return row


def score_sets(sets: list[MelodySet], gt: MelodySet, dims: list[int], rounds: int = 1000, seed: int = 0) -> list[dict]:
    """Score ground truth (against itself) and every set; rows in order."""
    gt_overlaps = piece_overlaps(gt.melodies)
    gt_stats = melody_statistics(gt.melodies)
    return [score_set(s, gt, gt_overlaps, gt_stats, dims, rounds, seed) for s in [gt, *sets]]


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def table_markdown(rows: list[dict]) -> str:
    """The table as Markdown: each OA figure with its 95% bootstrap interval."""
    columns = (
        "set | n | pitch C | pitch V | duration C | duration V | latent FD | MMD | notes/bar | PC dist | off-key"
        " | repeated bars | loops"
    )
    head = f"| {columns} |\n| --- |{' ---: |' * 12}\n"
    lines = []
    for r in rows:
        cells = []
        for key in OA_COLUMNS:
            if f"{key}_spread" in r:  # repeated draws: mean ± std (min)
                mean, std, low = r[f"{key}_spread"]
                cells.append(f"{mean:.3f} ± {std:.3f} (min {low:.2f})")
            else:
                low, high = r["interval"].get(key, (r[key], r[key]))
                cells.append(f"{r[key]:.3f} [{low:.2f}, {high:.2f}]")
        lines.append(
            f"| {r['set']} | {r['n']} | {' | '.join(cells)} | {_fmt(r['latent_fd'], 2)} | {_fmt(r['latent_mmd'], 4)} "
            f"| {r['notes_per_bar']:.2f} | {r['pc_distance']:.3f} | {r['out_of_key']:.3f} "
            f"| {r.get('repeated_bars', 0):.2f} | {r.get('loops', 0):.2f} |"
        )
    return head + "\n".join(lines) + "\n"


def write_table(rows: list[dict], out_dir: str | Path, meta: dict) -> dict[str, Path]:
    """``table.md``, ``table.json`` and ``overlaps.png`` (per-piece OA distributions per set) in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"md": out_dir / "table.md", "json": out_dir / "table.json", "png": out_dir / "overlaps.png"}
    atomic_write_text(files["md"], table_markdown(rows))
    atomic_write_text(files["json"], json.dumps({"meta": meta, "rows": rows}, indent=1))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.5), sharey=True)
    for k, (ax, feature) in enumerate(zip(axes, ("pitch", "duration"))):
        data = [[o[k] for o in r["overlaps"] if o[k] is not None] for r in rows]
        ax.boxplot(data, vert=False, showfliers=False)
        ax.set_title(f"{feature}: mean OA of adjacent frames per piece")
        ax.set_xlim(0, 1)
    axes[0].set_yticks(range(1, len(rows) + 1), [r["set"] for r in rows])
    axes[0].invert_yaxis()
    fig.tight_layout()
    with atomic_path(files["png"]) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return files
