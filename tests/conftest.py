import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def melody_run(tmp_path_factory):
    """(root, run folder) of a tiny trained melody chain, shared by the tests that need a melody checkpoint."""
    from tests.helpers import make_melody_run

    root = tmp_path_factory.mktemp("melody")
    return root, make_melody_run(root)
