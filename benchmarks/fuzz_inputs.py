"""Throw generated bad inputs at the public entry points and count how each case ends.

    python benchmarks/fuzz_inputs.py                 # ~1,100 cases + 7 real CLI runs, a few minutes
    python benchmarks/fuzz_inputs.py --scale 0.1     # a tenth of the in-process cases

Families: TFRecords (flipped bytes, truncation, garbage, wrong lengths and feature types, NaN/Inf)
read by ``LatentDataModule``; MIDI files (truncated, byte-flipped, empty, drum-only, absurd tempi and
meters, out-of-range data) read by ``midi_tunes``/``load_melodies``; command lines (unknown keys,
wrong types, negative sizes, bad syntax) checked by ``check_overrides``; checkpoints (truncated, of
another model or project, code-running pickles, foreign ``_target_``) read by ``load_checkpoint``/
``restore``/``load_musicvae``; ``sample`` with bad values. Each case must end in a ``UserError`` whose
one-line message names the file or field (``user_error``) or be handled correctly (``handled``: a
bad MIDI file skipped and counted, a shard cut at a record boundary read as the records before
it). Anything else is a failure: ``unhandled`` (another exception: a traceback), ``bad_message``,
``accepted`` (bad input taken as good) or ``half_written`` (a temporary or partial file left).
"""

import argparse
import collections
import random
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import fuzz_cases  # noqa: E402
from benchmarks.fuzz_cases import Case  # noqa: E402
from ddpm.errors import UserError  # noqa: E402

FAILURES = ("unhandled", "bad_message", "accepted", "half_written")


def outcome(case: Case) -> tuple[str, str]:
    """(outcome, detail) of one case."""
    try:
        result = case.run()
    except UserError as e:
        message = " ".join(str(e).split())
        if not any(n in message for n in case.names) or len(message) > 600:
            return "bad_message", message[:300]
        kind = "user_error"
    except Exception:  # noqa: BLE001 - this is what the fuzzer counts
        return "unhandled", traceback.format_exc(limit=3)[-600:]
    else:
        if case.handled is None or not case.handled(result):
            return "accepted", repr(result)[:200]
        kind = "handled"
    if kind == "user_error" and case.absent is not None and case.absent.exists():
        return "half_written", f"{case.absent} was created before the error"
    if case.folder is not None:
        leftovers = [p for p in case.folder.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]
        if leftovers:
            return "half_written", str(leftovers[:3])
    return kind, ""


def cli_cases(work: Path, fx: "fuzz_cases.Fixtures") -> Iterator[tuple[str, list[str], str]]:
    """(name, command, field) of real runs that must exit 2 with one ``error:`` line and no traceback."""
    ckpt = str(fx.ckpt)
    cuda = "cuda:99" if torch.cuda.is_available() else "cuda"
    yield "sample infill=[10,4]", ["sample.py", f"ckpt={ckpt}", "infill=[10,4]", "n=2"], "infill"
    yield "sample n=0", ["sample.py", f"ckpt={ckpt}", "n=0"], "n=0"
    yield f"sample device={cuda}", ["sample.py", f"ckpt={ckpt}", f"device={cuda}"], "device"
    missing = work / "no_such_dir"
    run_dir = f"hydra.run.dir={work / 'cli_run'}"
    yield "train data.dir missing", ["train.py", "data=mvae", f"data.dir={missing}", run_dir, "logger=none"], "data.dir"
    yield "sample crafted ckpt", ["sample.py", f"ckpt={fx.evil}"], str(fx.evil)
    small = ["experiment=digits", "logger=none", "callbacks.samples=null", "+trainer.limit_train_batches=1"]
    yield "train unknown key", ["train.py", *small, "trainer.bogus_key=1", run_dir], "bogus_key"
    yield "train wrong type", ["train.py", *small, "trainer.max_epochs=abc", run_dir], "trainer.max_epochs"


def run_cli(command: list[str], field: str) -> tuple[str, str]:
    res = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    if "Traceback" in res.stderr:
        return "unhandled", res.stderr[-600:]
    if res.returncode != 2 or not lines or not lines[-1].startswith("error: ") or field not in lines[-1]:
        return "bad_message", f"exit {res.returncode}: {res.stderr[-300:]}"
    return "user_error", lines[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the in-process cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cli", action="store_true", help="skip the real sample.py/train.py runs")
    args = parser.parse_args(argv)
    counts, failures = run(args.scale, args.seed, cli=not args.no_cli)
    print_counts(counts)
    for line in failures[:40]:
        print(line)
    return 1 if failures else 0


def run(scale: float = 1.0, seed: int = 0, cli: bool = True, work: Path | None = None):
    """Counter of (family, outcome) and the failure lines."""
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="fuzz_")) if own else work
    counts: collections.Counter = collections.Counter()
    failures = []
    try:
        rng = random.Random(seed)
        fx = fuzz_cases.make_fixtures(work / "fixtures")
        for case in fuzz_cases.all_cases(work, fx, rng, scale):
            kind, detail = outcome(case)
            counts[case.family, kind] += 1
            if kind in FAILURES:
                failures.append(f"{case.family} / {case.name}: {kind}: {detail}")
        if cli:
            for name, command, field in cli_cases(work, fx):
                kind, detail = run_cli(command, field)
                counts["cli (exit 2)", kind] += 1
                if kind in FAILURES:
                    failures.append(f"cli / {name}: {kind}: {detail}")
            if fx.marker.exists():
                failures.append(f"cli / crafted checkpoint: its code ran ({fx.marker} exists)")
                counts["cli (exit 2)", "unhandled"] += 1
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return counts, failures


def print_counts(counts: collections.Counter) -> None:
    families = sorted({f for f, _ in counts})
    kinds = ["user_error", "handled", *FAILURES]
    print(f"{'family':<16}" + "".join(f"{k:>14}" for k in kinds) + f"{'total':>8}")
    for family in families:
        row = [counts[family, k] for k in kinds]
        print(f"{family:<16}" + "".join(f"{v:>14}" for v in row) + f"{sum(row):>8}")
    totals = [sum(counts[f, k] for f in families) for k in kinds]
    print(f"{'all':<16}" + "".join(f"{v:>14}" for v in totals) + f"{sum(totals):>8}")


if __name__ == "__main__":
    sys.exit(main())
