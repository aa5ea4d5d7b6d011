"""Progress lines reach the user in the commands that switch Hydra's logging off (sample.py, evaluate.py)."""

import logging
import logging.config
from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

from ddpm.progress import Progress, to_stderr


@pytest.fixture
def hydra_logging_disabled():
    """Apply Hydra's ``job_logging: disabled`` (what ``sample.py``/``evaluate.py`` run under), then undo it."""
    loggers = [logging.getLogger(name) for name in logging.root.manager.loggerDict]
    before = [(lg, lg.disabled) for lg in loggers if isinstance(lg, logging.Logger)]
    root_level, root_handlers = logging.root.level, logging.root.handlers[:]
    progress = logging.getLogger("ddpm.progress")  # to_stderr gives it a handler and a level: undone below
    progress_level, progress_handlers = progress.level, progress.handlers[:]
    config = Path(hydra.__file__).parent / "conf" / "hydra" / "job_logging" / "disabled.yaml"
    logging.config.dictConfig(OmegaConf.to_container(OmegaConf.load(config)))
    yield
    for lg, disabled in before:
        lg.disabled = disabled
    logging.root.setLevel(root_level)
    logging.root.handlers[:] = root_handlers
    progress.setLevel(progress_level)
    progress.handlers[:] = progress_handlers


def test_progress_is_shown_although_hydra_disabled_the_existing_loggers(hydra_logging_disabled, caplog):
    assert logging.getLogger("ddpm.progress").disabled  # what Hydra does to a logger made at import
    to_stderr()
    with caplog.at_level(logging.INFO, logger="ddpm.progress"):
        Progress("DDPM", 1000, "network evaluations", every=0).step(250)
    assert "DDPM 250/1000 network evaluations (25%)" in caplog.text
