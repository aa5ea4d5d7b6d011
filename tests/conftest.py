import os
import sys
from pathlib import Path

# `make test` runs one pytest-xdist worker per core: each worker, and the CLI processes its tests
# start, then computes on one thread, so that the workers do not contend for the cores. Set before
# torch is imported, and at import so that the session fixtures built before any test train so too.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
if THREADS == 1:
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(THREADS)
    yield


@pytest.fixture(scope="session")
def melody_run(tmp_path_factory):
    """(root, run folder) of a tiny trained melody chain, shared by the tests that need a melody checkpoint."""
    from tests.helpers import make_melody_run

    root = tmp_path_factory.mktemp("melody")
    return root, make_melody_run(root)
