"""A fast slice of benchmarks/fuzz_inputs.py, and real CLI runs: bad input ends in one line and exit 2."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import fuzz_inputs  # noqa: E402
from benchmarks.fuzz_cases import make_fixtures  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def fixtures(work):
    return make_fixtures(work / "fixtures")


def test_fuzzed_inputs_end_in_user_errors_or_are_handled(work, fixtures):
    counts, failures = fuzz_inputs.run(scale=0.04, seed=1, cli=False, work=work)
    assert not failures, "\n".join(failures)
    families = {family for family, _ in counts}
    assert families == {"tfrecord", "midi", "config", "checkpoint", "sample"}
    assert sum(counts.values()) >= 50 and sum(v for (_, k), v in counts.items() if k == "user_error") >= 40


def test_outcomes_are_told_apart():
    """The harness itself: a traceback, a message without the field, and a bad input accepted all count."""
    from benchmarks.fuzz_cases import Case
    from ddpm.errors import UserError

    def boom():
        raise KeyError("x")

    def vague():
        raise UserError("something went wrong")

    assert fuzz_inputs.outcome(Case("t", "a", boom, ("x",)))[0] == "unhandled"
    assert fuzz_inputs.outcome(Case("t", "b", vague, ("n=0",)))[0] == "bad_message"
    assert fuzz_inputs.outcome(Case("t", "c", lambda: 1, ("n",)))[0] == "accepted"
    assert fuzz_inputs.outcome(Case("t", "d", lambda: 1, ("n",), handled=lambda r: r == 1))[0] == "handled"


# The four (infill=[10,4], n=0, device=cuda without a GPU, a missing data.dir) run by default;
# a crafted checkpoint, an unknown key and a wrong type are slow-marked (each run imports torch).
@pytest.mark.parametrize("index", [0, 1, 2, 3, *(pytest.param(i, marks=pytest.mark.slow) for i in (4, 5, 6))])
def test_cli_bad_input_exits_2_with_one_line(work, fixtures, index):
    name, command, field = list(fuzz_inputs.cli_cases(work, fixtures))[index]
    kind, detail = fuzz_inputs.run_cli(command, field)
    assert kind == "user_error", f"{name}: {detail}"
    assert not fixtures.marker.exists()
    assert not (work / "cli_run").exists(), f"{name}: the refused run left its folder behind"
