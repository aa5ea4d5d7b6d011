"""Time the corpus stage from empty caches: ours (a temp folder) and music21's (its scratch folder).

    python benchmarks/corpus_speed.py [--meters all] [--collections essenFolksong ...] [--files 20]

Prints wall and CPU seconds, tunes, windows, and kept/skipped tunes per meter. music21 keeps
parsed files as pickles in ``<tempdir>/music21``; TMPDIR is pointed at a fresh folder before
music21 is imported, so no pickle from an earlier run is reused (the stage no longer reads or
writes them, but a benchmark of it should not depend on that). ``--files N`` times the first N
files of each collection only, for a quick estimate on a busy machine.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

SCRATCH = tempfile.mkdtemp(prefix="corpus-speed-")
os.environ["TMPDIR"] = SCRATCH  # before music21 reads tempfile.gettempdir()
tempfile.tempdir = None

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from omegaconf import OmegaConf  # noqa: E402

from ddpm.music import corpus  # noqa: E402
from ddpm.music.tunes import METERS  # noqa: E402

FOLK = Path(__file__).resolve().parents[1] / "conf" / "corpus" / "folk.yaml"


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the parser processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    folk = OmegaConf.load(FOLK)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", nargs="+", default=list(folk.collections))
    parser.add_argument("--meters", choices=METERS, default=folk.get("meters", "duple"))
    parser.add_argument("--workers", type=int, default=folk.get("workers", 2))
    parser.add_argument("--files", type=int, default=None, help="only the first N files of each collection")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    files = corpus.corpus_files(args.collections)
    if args.files:
        files = [p for c in args.collections for p in corpus.corpus_files([c])[: args.files]]
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    tunes, records = corpus.extract_files(files, args.workers, args.meters)
    wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
    counts = corpus.meter_counts(tunes, records)
    print(
        f"{len(files)} files, {len(records)} tunes read, {len(tunes)} kept, {sum(t.num_windows for t in tunes)} windows"
    )
    print(f"meters={args.meters} workers={args.workers}: {wall:.1f} s wall, {cpu:.1f} s CPU ({os.cpu_count()} cores)")
    print(f"{'meter':>10} {'kept':>6} {'skipped':>8} {'windows':>8}")
    for meter, row in counts.items():
        print(f"{meter:>10} {row['kept']:>6} {row['skipped']:>8} {row['windows']:>8}")
    skipped = {}
    for _, reason in records:
        if reason != "ok":
            skipped[reason] = skipped.get(reason, 0) + 1
    print("skipped:", dict(sorted(skipped.items(), key=lambda kv: -kv[1])))
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    from ddpm.errors import run_or_exit

    run_or_exit(main)  # bad input (a missing checkpoint, a bad override): one line, exit status 2
