"""Monophonic melodies from the corpus inside the ``music21`` wheel, or from the user's MIDI files.

Extraction (cached on first use): repeats expanded where the notation has them, ties merged,
chords and voices reduced to their top note, a pickup bar padded with rest so bar lines fall on
the grid, and tunes with one meter. ``meters="all"`` puts every meter on the same 16th grid, cut
into 32-step windows (the length of MusicVAE's 2-bar 4/4 window; a 3/4 window then starts on a
bar line one time in three); ``meters="duple"`` keeps only meters whose bar divides 32 steps
(2/4, 4/4, 2/2...). MusicVAE's own data converter is stricter still: it keeps 16-step bars only.
ABC files go through ``ddpm.music.abc`` (music21's ABC tokens, no music21 streams: the same notes
for over 10x less CPU); MusicXML and the rare ABC tune it declines through music21's full parse.
Tunes are split into train/eval by title, so a tune that appears twice (in two collections, or
twice in one) never lands on both sides. The tunes of a MIDI folder come from ``ddpm.music.midi_corpus``;
what both sources share (``Tune``, the meter rule, the padding, parsing in processes) from
``ddpm.music.tunes``.
"""

import hashlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ddpm.errors import ConfigError, MissingFileError
from ddpm.io.atomic import atomic_path
from ddpm.music import abc
from ddpm.music.events import STEPS_PER_QUARTER, Note, notes_to_events
from ddpm.music.midi_corpus import MIDI_VERSION, check_tracks, folder_tunes, midi_digest, midi_files
from ddpm.music.tunes import Records, Tune, bar_fits, events_to_tune, parse_files

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


EXTRACTION_VERSION = 3  # bump when the events of a tune change, so that older caches and latents are not reused


def corpus_root() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def check_meter(signatures: list, meters: str = "duple") -> tuple[object, str, str]:
    """A tune's music21 time signatures -> (its one signature or None, meter label, "ok" or why it is skipped)."""
    # music21 reads an ABC unit length written "L: 1/16" as a 1/16 meter: no real meter has numerator 1.
    signatures = [ts for ts in signatures if ts.numerator != 1]
    names = {ts.ratioString for ts in signatures}
    if len(names) != 1:
        return None, ("changing" if names else "none"), ("meter changes" if names else "no meter")
    ts = signatures[0]
    if not bar_fits(ts.barDuration.quarterLength * STEPS_PER_QUARTER, meters):
        return None, ts.ratioString, f"meter {ts.ratioString}"
    return ts, ts.ratioString, "ok"


def grid_tune(notes: list, first_bar, length, ts, title: str, source: str) -> tuple["Tune | None", str]:
    """Notes [(onset, end, MIDI pitch)] in quarter notes -> a Tune on the 16th grid, its pickup bar padded."""
    bar = ts.barDuration.quarterLength
    # A pickup bar is shorter than a full bar: pad it with rest so later bar lines sit on the grid.
    shift = bar - first_bar if first_bar is not None and first_bar < bar else 0.0
    grid = []
    for onset, end, pitch in notes:
        start = round((float(onset) + shift) * STEPS_PER_QUARTER)
        grid.append(Note(pitch, start, max(round((float(end) + shift) * STEPS_PER_QUARTER), start + 1)))
    total = round((float(length) + shift) * STEPS_PER_QUARTER)  # includes trailing rests
    events = notes_to_events(grid, max(total, max((n.end for n in grid), default=0)))
    return events_to_tune(events, title, source, ts.ratioString)


def score_to_tune(score, source: str, meters: str = "duple") -> tuple["Tune | None", str, str]:
    """A music21 score -> (Tune or None, meter label, "ok" or the reason it was skipped)."""
    title = (score.metadata.title if score.metadata and score.metadata.title else "") or source
    part = score.parts[0] if score.parts else score
    ts, label, reason = check_meter(list(part.recurse().getElementsByClass("TimeSignature")), meters)
    if ts is None:
        return None, label, reason
    try:
        part = part.expandRepeats()
    except Exception:  # noqa: BLE001 - malformed repeat marks: keep the notated order
        pass
    measures = list(part.getElementsByClass("Measure"))
    notes = [
        (n.offset, n.offset + n.duration.quarterLength, max(p.midi for p in n.pitches))  # top note of a chord
        for n in part.stripTies().flatten().notes
        if n.duration.quarterLength != 0  # grace notes
    ]
    first = measures[0].duration.quarterLength if measures else None
    tune, reason = grid_tune(notes, first, part.highestTime, ts, title, source)
    return tune, label, reason


def abc_to_tune(handler, source: str, meters: str = "duple") -> tuple["Tune | None", str, str]:
    """One ABC tune (a music21 ABCHandler) through ``ddpm.music.abc``, or music21's full parse where it declines."""
    parsed = abc.melody(handler)
    if parsed is None:
        from music21.abcFormat import translate

        return score_to_tune(translate.abcToStreamScore(handler), source, meters)
    ts, label, reason = check_meter(parsed.signatures, meters)
    if ts is None:
        return None, label, reason
    notes, first, length = parsed.flat()
    tune, reason = grid_tune(notes, first, length, ts, parsed.title or source, source)
    return tune, label, reason


def _parse_file(path: str, meters: str = "duple") -> tuple[list[Tune], Records]:
    """All tunes of one ABC/MusicXML file, and (meter label, "ok" or why skipped) for each tune read."""
    from music21 import converter, stream

    name = f"{Path(path).parent.name}/{Path(path).name}"
    try:
        if path.endswith(".abc"):
            scores, convert = abc.read_file(path), abc_to_tune
        else:  # no pickle cache in music21's scratch folder: this stage has its own cache
            parsed = converter.parse(path, forceSource=True, storePickle=False)
            scores = parsed.scores if isinstance(parsed, stream.Opus) else [parsed]
            convert = score_to_tune
    except Exception:  # noqa: BLE001 - music21 raises many kinds on bad files
        return [], [("unknown", "unparseable file")]
    tunes, records = [], []
    for i, score in enumerate(scores):
        try:
            tune, label, reason = convert(score, f"{name}#{i}", meters)
        except Exception:  # noqa: BLE001
            tune, label, reason = None, "unknown", "extraction error"
        tunes += [tune] if tune is not None else []
        records.append((label, reason))
    return tunes, records


def extract_files(paths: list[Path], workers: int = 2, meters: str = "duple") -> tuple[list[Tune], Records]:
    """The tunes of ABC / MusicXML files, parsed in ``workers`` processes (0: in this one) with progress in
    tunes; in file order."""
    return parse_files(paths, _parse_file, meters, workers, [_count_tunes(path) for path in paths], "tunes")


def _count_tunes(path: Path) -> int:
    """Tunes in a file, for progress: its ``X:`` reference numbers (music21 splits ABC files on them)."""
    if path.suffix != ".abc":
        return 1
    return max(1, len(re.findall(rb"^X:", path.read_bytes(), re.MULTILINE)))


def corpus_files(collections: list[str]) -> list[Path]:
    root = corpus_root()
    unknown = [c for c in collections if c not in COLLECTIONS]
    if unknown:
        raise ConfigError(f"prepare.corpus.collections: unknown {unknown}; choose from {sorted(COLLECTIONS)}")
    return [p for c in collections for p in sorted(root.glob(COLLECTIONS[c]))]


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
    cache_dir: str | Path,
    collections: list[str] | None = None,
    midi_dir: str | None = None,
    workers: int = 2,
    meters: str = "duple",
    midi_tracks: str = "each",
) -> tuple[list[Tune], dict]:
    """Tunes of ``collections`` (music21 corpus) plus ``midi_dir``, cached in ``cache_dir``.

    Args:
        meters: "all" keeps every meter on the 16th grid; "duple" only meters whose bar divides 32 steps.
        midi_tracks: "each" makes every track of a MIDI file a tune; "longest" only its melody with most notes.

    Returns (tunes, report): the report counts tunes, windows, skip reasons, and kept/skipped tunes
    per meter ("none": no meter given; "changing": more than one).
    """
    import music21

    collections = list(collections or [])
    bar_fits(16, meters)
    check_tracks(midi_tracks)
    if midi_dir:  # checked before the cache (its key reads the files) and the collections' long extraction
        folder = Path(midi_dir)
        if not folder.is_dir():
            raise MissingFileError(f"corpus.midi_dir={midi_dir}: no such folder (expected a folder of .mid files)")
        if not midi_files(folder):
            raise MissingFileError(f"corpus.midi_dir={midi_dir}: no .mid or .midi files in it")
    key = {"collections": collections, "midi_dir": str(midi_dir) if midi_dir else None, "meters": meters}
    if midi_dir:  # the folder's content, not just its name, and how its files are read
        key |= {"midi_files": midi_digest(midi_dir), "midi_tracks": midi_tracks, "midi_v": MIDI_VERSION}
    spec = json.dumps({**key, "music21": music21.__version__, "v": EXTRACTION_VERSION})
    cache = Path(cache_dir) / f"melodies-{hashlib.sha256(spec.encode()).hexdigest()[:12]}.npz"
    if cache.exists():
        return _load_cache(cache)
    start = time.perf_counter()
    tunes, records = extract_files(corpus_files(collections), workers, meters) if collections else ([], [])
    if midi_dir:
        more, more_records = folder_tunes(midi_dir, meters, midi_tracks, workers)
        tunes, records = tunes + more, records + more_records
    skipped = dict(Counter(reason for _, reason in records if reason != "ok"))
    if not tunes:
        hint = meters_hint(skipped, meters)
        raise ConfigError(
            f"prepare.corpus: no usable melodies in collections {collections} / midi_dir {midi_dir}: "
            f"skipped {skipped}{hint}"
        )
    report = {
        "tunes": len(tunes),
        "windows": sum(t.num_windows for t in tunes),
        "skipped": skipped,
        "meters": meter_counts(tunes, records),
        "seconds": round(time.perf_counter() - start, 1),
        "spec": spec,
    }
    log.info(
        "corpus: %d tunes, %d windows in %.0f s; skipped %s", len(tunes), report["windows"], report["seconds"], skipped
    )
    _save_cache(cache, tunes, report)
    return tunes, report


def meters_hint(skipped: dict[str, int], meters: str) -> str:
    """What keeps tunes skipped for their meter: ``meters=all``, unless the meter changes inside them."""
    by_meter = [reason for reason in skipped if reason.startswith("meter ") and reason != "meter changes"]
    return "; prepare.corpus.meters=all keeps every meter" if meters == "duple" and by_meter else ""


def meter_counts(tunes: list[Tune], records: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{meter: {"kept": tunes, "skipped": tunes, "windows": kept windows}}, most tunes first."""
    counts: dict[str, dict[str, int]] = {}
    for label, reason in records:
        row = counts.setdefault(label, {"kept": 0, "skipped": 0, "windows": 0})
        row["kept" if reason == "ok" else "skipped"] += 1
    for tune in tunes:
        counts[tune.meter]["windows"] += tune.num_windows
    return dict(sorted(counts.items(), key=lambda kv: -(kv[1]["kept"] + kv[1]["skipped"])))


def _save_cache(path: Path, tunes: list[Tune], report: dict) -> None:
    meta = [{k: v for k, v in asdict(t).items() if k != "events"} for t in tunes]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no suffix
        np.savez_compressed(
            f,
            events=np.concatenate([t.events for t in tunes]),
            lengths=np.array([len(t.events) for t in tunes]),
            meta=json.dumps(meta),
            report=json.dumps(report),
        )


def _load_cache(path: Path) -> tuple[list[Tune], dict]:
    data = np.load(path)
    meta, report = json.loads(str(data["meta"])), json.loads(str(data["report"]))
    chunks = np.split(data["events"], np.cumsum(data["lengths"])[:-1])
    return [Tune(m["title"], m["source"], m["meter"], e) for m, e in zip(meta, chunks)], report


class Corpus:
    """The melodies a chain is trained on (the ``corpus`` config group): collections of the music21
    corpus plus a folder of the user's MIDI files, cached in ``cache_dir``, split by title.

    Args:
        collections: music21 corpus collections (see ``COLLECTIONS``).
        midi_dir: a folder of ``.mid`` files extracted the same way (``None``: none).
        cache_dir: where the extracted tunes are cached (keyed by this spec and music21's version).
        eval_fraction: share of titles held out; seed: the split's seed.
        workers: parser processes (0: in this one); meters: "duple" or "all" (see ``bar_fits``).
        midi_tracks: "each" (every track of a MIDI file a tune) or "longest" (its melody track with most notes).
    """

    def __init__(
        self,
        collections: list[str],
        midi_dir: str | None = None,
        cache_dir: str = "data/cache",
        eval_fraction: float = 0.1,
        seed: int = 0,
        workers: int = 2,
        meters: str = "duple",
        midi_tracks: str = "each",
    ):
        bar_fits(16, meters)  # checks the values
        self.midi_tracks = check_tracks(midi_tracks)
        self.collections = [str(c) for c in collections]
        self.midi_dir = str(midi_dir) if midi_dir else None
        self.cache_dir, self.eval_fraction, self.seed = Path(cache_dir), float(eval_fraction), int(seed)
        self.workers, self.meters = int(workers), meters
        if self.cache_dir.exists() and not self.cache_dir.is_dir():
            raise ConfigError(f"prepare.corpus.cache_dir={cache_dir}: a file is there; expected a folder for the cache")

    def spec(self) -> dict:
        """What the tunes and their split depend on (recorded in a latent folder's manifest): the MIDI
        folder counts by its files' content, so a folder whose files changed makes the latents stale."""
        return {
            "collections": self.collections,
            "midi_dir": self.midi_dir,
            **(self._midi_spec() if self.midi_dir else {}),
            "meters": self.meters,
            "extraction": EXTRACTION_VERSION,
            "eval_fraction": self.eval_fraction,
            "split_seed": self.seed,
        }

    def _midi_spec(self) -> dict:
        return {"midi_files": midi_digest(self.midi_dir), "midi_tracks": self.midi_tracks, "midi_v": MIDI_VERSION}

    def split(self) -> tuple[list[Tune], list[Tune], dict]:
        """(train tunes, eval tunes, report): extracted once, then read from the cache."""
        tunes, report = load_melodies(
            self.cache_dir, self.collections, self.midi_dir, self.workers, self.meters, self.midi_tracks
        )
        train, evals = split_by_title(tunes, self.eval_fraction, self.seed)
        if not train or not evals:
            raise ConfigError(
                f"prepare.corpus.eval_fraction={self.eval_fraction}: {len(train)} train and {len(evals)} eval tunes "
                f"of {len(tunes)}; expected a share that leaves tunes on both sides"
            )
        return train, evals, report
