"""Monophonic melodies from the corpus inside the ``music21`` wheel, or from the user's MIDI files.

Extraction (cached on first use): repeats expanded where the notation has them, ties merged,
chords and voices reduced to their top note, a pickup bar padded with rest so bar lines fall on
the grid, and only tunes with one meter whose bar divides the 32-step window (2/4, 4/4, 2/2...).
Tunes are split into train/eval by title, so a tune that appears twice (in two collections, or
twice in one) never lands on both sides.
"""

import hashlib
import json
import logging
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ddpm.music.events import STEPS_PER_QUARTER, WINDOW_STEPS, Note, notes_to_events, read_midi

log = logging.getLogger(__name__)

COLLECTIONS = {
    "oneills1850": "oneills1850/*.abc",
    "ryansMammoth": "ryansMammoth/*.abc",
    "airdsAirs": "airdsAirs/*.abc",
    "nottingham": "nottingham-dataset/*.abc",
    "miscFolk": "miscFolk/*.abc",
    "essenFolksong": "essenFolksong/*.abc",
    "bachChorales": "bach/bwv*.mxl",
}


@dataclass
class Tune:
    title: str
    source: str
    meter: str
    events: np.ndarray  # [steps], a whole number of 32-step windows

    @property
    def num_windows(self) -> int:
        return len(self.events) // WINDOW_STEPS


def corpus_root() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def score_to_tune(score, source: str) -> tuple["Tune | None", str]:
    """A music21 score -> (Tune, "ok") or (None, reason it was skipped)."""
    title = (score.metadata.title if score.metadata and score.metadata.title else "") or source
    part = score.parts[0] if score.parts else score
    # music21 reads an ABC unit length written "L: 1/16" as a 1/16 meter: no real meter has numerator 1.
    signatures = [ts for ts in part.recurse().getElementsByClass("TimeSignature") if ts.numerator != 1]
    meters = {ts.ratioString for ts in signatures}
    if len(meters) != 1:
        return None, "meter changes" if meters else "no meter"
    ts = signatures[0]
    bar_steps = ts.barDuration.quarterLength * STEPS_PER_QUARTER
    if bar_steps != int(bar_steps) or WINDOW_STEPS % int(bar_steps):
        return None, f"meter {ts.ratioString}"
    try:
        part = part.expandRepeats()
    except Exception:  # noqa: BLE001 - malformed repeat marks: keep the notated order
        pass
    measures = list(part.getElementsByClass("Measure"))
    # A pickup bar is shorter than a full bar: pad it with rest so later bar lines sit on the grid.
    shift = 0.0
    if measures and measures[0].duration.quarterLength < ts.barDuration.quarterLength:
        shift = ts.barDuration.quarterLength - measures[0].duration.quarterLength
    notes = []
    for n in part.stripTies().flatten().notes:
        if n.duration.quarterLength == 0:  # grace notes
            continue
        pitch = max(p.midi for p in n.pitches)  # top note of a chord
        start = round((float(n.offset) + shift) * STEPS_PER_QUARTER)
        end = round((float(n.offset + n.duration.quarterLength) + shift) * STEPS_PER_QUARTER)
        notes.append(Note(pitch, start, max(end, start + 1)))
    total = round((float(part.highestTime) + shift) * STEPS_PER_QUARTER)  # includes trailing rests
    return events_to_tune(
        notes_to_events(notes, max(total, max((n.end for n in notes), default=0))), title, source, ts.ratioString
    )


def events_to_tune(events: np.ndarray, title: str, source: str, meter: str) -> tuple["Tune | None", str]:
    """Pad events to whole windows and wrap them; skip tunes with no notes."""
    if not (events >= 2).any():
        return None, "no notes"
    steps = -(-len(events) // WINDOW_STEPS) * WINDOW_STEPS
    events = np.pad(events, (0, steps - len(events)))
    return Tune(title, source, meter, events.astype(np.int8)), "ok"


def _parse_file(path: str) -> tuple[list[Tune], dict[str, int]]:
    """All tunes of one ABC/MusicXML file, and counts of skip reasons."""
    from music21 import converter, stream

    skipped: dict[str, int] = {}
    try:
        parsed = converter.parse(path)
    except Exception:  # noqa: BLE001 - music21 raises many kinds on bad files
        return [], {"unparseable file": 1}
    scores = parsed.scores if isinstance(parsed, stream.Opus) else [parsed]
    tunes = []
    for i, score in enumerate(scores):
        try:
            tune, reason = score_to_tune(score, f"{Path(path).parent.name}/{Path(path).name}#{i}")
        except Exception:  # noqa: BLE001
            tune, reason = None, "extraction error"
        if tune is None:
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            tunes.append(tune)
    return tunes, skipped


def extract_files(paths: list[Path], workers: int = 2) -> tuple[list[Tune], dict[str, int]]:
    """Parse files in ``workers`` processes; tunes in file order."""
    tunes, skipped = [], {}
    with ProcessPoolExecutor(workers) as pool:
        for file_tunes, file_skipped in pool.map(_parse_file, [str(p) for p in paths], chunksize=1):
            tunes.extend(file_tunes)
            for k, v in file_skipped.items():
                skipped[k] = skipped.get(k, 0) + v
    return tunes, skipped


def corpus_files(collections: list[str]) -> list[Path]:
    root = corpus_root()
    unknown = [c for c in collections if c not in COLLECTIONS]
    if unknown:
        raise ValueError(f"unknown corpus collections {unknown}; choose from {sorted(COLLECTIONS)}")
    return [p for c in collections for p in sorted(root.glob(COLLECTIONS[c]))]


def midi_tunes(folder: str | Path) -> tuple[list[Tune], dict[str, int]]:
    """Melodies from a folder of ``.mid``/``.midi`` files, through the same grid and meter rules."""
    tunes, skipped = [], {}
    for path in sorted(Path(folder).rglob("*.mid*")):
        try:
            events, bar_steps = read_midi(path)
        except Exception:  # noqa: BLE001 - unreadable or empty MIDI file
            skipped["unreadable midi"] = skipped.get("unreadable midi", 0) + 1
            continue
        if WINDOW_STEPS % bar_steps:
            skipped[f"bar of {bar_steps} steps"] = skipped.get(f"bar of {bar_steps} steps", 0) + 1
            continue
        tune, reason = events_to_tune(events, path.stem, str(path), f"{bar_steps} steps")
        if tune is None:
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            tunes.append(tune)
    return tunes, skipped


def split_by_title(tunes: list[Tune], eval_fraction: float = 0.1, seed: int = 0) -> tuple[list[Tune], list[Tune]]:
    """Deterministic train/eval split over normalised titles: one title, one side."""

    def key(title: str) -> str:
        return re.sub(r"[^a-z0-9]", "", title.lower()) or title

    def to_eval(title: str) -> bool:
        digest = hashlib.sha256(f"{seed}:{key(title)}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction

    train = [t for t in tunes if not to_eval(t.title)]
    evals = [t for t in tunes if to_eval(t.title)]
    return train, evals


def load_melodies(
    cache_dir: str | Path, collections: list[str] | None = None, midi_dir: str | None = None, workers: int = 2
) -> tuple[list[Tune], dict]:
    """Tunes of ``collections`` (music21 corpus) plus ``midi_dir``, cached in ``cache_dir``.

    Returns (tunes, report) where the report counts tunes, windows and skip reasons.
    """
    collections = list(collections or [])
    spec = json.dumps({"collections": collections, "midi_dir": str(midi_dir) if midi_dir else None, "v": 2})
    cache = Path(cache_dir) / f"melodies-{hashlib.sha256(spec.encode()).hexdigest()[:12]}.npz"
    if cache.exists():
        return _load_cache(cache)
    tunes, skipped = extract_files(corpus_files(collections), workers) if collections else ([], {})
    if midi_dir:
        more, more_skipped = midi_tunes(midi_dir)
        tunes += more
        for k, v in more_skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    if not tunes:
        raise ValueError(f"no usable melodies in collections {collections} / midi_dir {midi_dir}: skipped {skipped}")
    report = {"tunes": len(tunes), "windows": sum(t.num_windows for t in tunes), "skipped": skipped, "spec": spec}
    _save_cache(cache, tunes, report)
    return tunes, report


def _save_cache(path: Path, tunes: list[Tune], report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = [{k: v for k, v in asdict(t).items() if k != "events"} for t in tunes]
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        events=np.concatenate([t.events for t in tunes]),
        lengths=np.array([len(t.events) for t in tunes]),
        meta=json.dumps(meta),
        report=json.dumps(report),
    )
    tmp.replace(path)


def _load_cache(path: Path) -> tuple[list[Tune], dict]:
    data = np.load(path)
    meta, report = json.loads(str(data["meta"])), json.loads(str(data["report"]))
    chunks = np.split(data["events"], np.cumsum(data["lengths"])[:-1])
    return [Tune(m["title"], m["source"], m["meter"], e) for m, e in zip(meta, chunks)], report
