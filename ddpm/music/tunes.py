"""A tune on the 16th grid, and what every source of tunes shares: the meter rule, the padding to whole
windows, and parsing files in processes with progress (``ddpm.music.corpus`` for the music21 corpus,
``ddpm.music.midi_corpus`` for a folder of MIDI files)."""

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddpm.errors import ConfigError
from ddpm.music.events import WINDOW_STEPS
from ddpm.progress import Progress


@dataclass
class Tune:
    title: str
    source: str
    meter: str
    events: np.ndarray  # [steps], a whole number of 32-step windows

    @property
    def num_windows(self) -> int:
        return len(self.events) // WINDOW_STEPS


METERS = ("duple", "all")


def bar_fits(bar_steps: float, meters: str) -> bool:
    """Whether a bar of ``bar_steps`` 16th steps is kept: whole steps, and with "duple" dividing the window."""
    if meters not in METERS:
        raise ConfigError(f"prepare.corpus.meters: got {meters!r}; expected one of {list(METERS)}")
    whole = bar_steps > 0 and bar_steps == int(bar_steps)
    return whole and (meters == "all" or WINDOW_STEPS % int(bar_steps) == 0)


def events_to_tune(events: np.ndarray, title: str, source: str, meter: str) -> tuple["Tune | None", str]:
    """Pad events to whole windows with rest and wrap them; skip tunes with no notes.

    A last note that sounds to the tune's end is held through the padding, as the shipped MusicVAE was
    trained; why it is not ended there (Magenta's ``Melody.set_length``, ``fit_length``): the evaluation
    log, "Ending the last note at the padding"."""
    if not (events >= 2).any():
        return None, "no notes"
    steps = -(-len(events) // WINDOW_STEPS) * WINDOW_STEPS
    events = np.pad(events, (0, steps - len(events)))
    return Tune(title, source, meter, events.astype(np.int8)), "ok"


Records = list[tuple[str, str]]  # (meter label, "ok" or why skipped) for each tune read


def parse_files(
    paths: list[Path],
    parse: Callable[[str, str], tuple[list[Tune], Records]],
    meters: str,
    workers: int = 2,
    counts: list[int] | None = None,
    unit: str = "files",
) -> tuple[list[Tune], Records]:
    """``parse(path, meters)`` over ``paths`` in ``workers`` processes (0: in this one), largest first,
    logging progress in ``unit``: ``counts`` of them per file (with the files done beside them), else one
    a file. Tunes and records in file order."""
    bar_fits(16, meters)  # a bad option fails here, not in every worker
    results: list = [None] * len(paths)
    progress = Progress("corpus: parsed", sum(counts) if counts is not None else len(paths), unit)
    files = (lambda n: f"{n}/{len(paths)} files") if counts is not None else (lambda n: "")
    largest_first = sorted(range(len(paths)), key=lambda i: -paths[i].stat().st_size)

    def done(n: int, i: int, result) -> None:
        results[i] = result
        progress.step(counts[i] if counts is not None else 1, files(n))

    if workers <= 0:
        for n, i in enumerate(largest_first, 1):
            done(n, i, parse(str(paths[i]), meters))
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures = {pool.submit(parse, str(paths[i]), meters): i for i in largest_first}
            for n, future in enumerate(as_completed(futures), 1):
                done(n, futures[future], future.result())
    progress.log(files(len(paths)))
    return [t for r in results for t in r[0]], [rec for r in results for rec in r[1]]
