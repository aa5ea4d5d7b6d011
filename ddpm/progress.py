"""Progress of a long stage, in the terminal and the log (Hydra's job log keeps a copy in the run folder)."""

import logging
import time

log = logging.getLogger(__name__)


class Progress:
    """Logs "<what> n/total <unit> (p%), <extra>, t s" at most every ``every`` seconds (and by ``log``)."""

    def __init__(self, what: str, total: int, unit: str, every: float = 5.0):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.done, self.start = 0, time.perf_counter()
        self.last = self.start

    def step(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        if time.perf_counter() - self.last >= self.every:
            self.log(extra)

    def log(self, extra: str = "") -> None:
        self.last = time.perf_counter()
        share = 100 * self.done / max(self.total, 1)
        extra = f"{extra}, " if extra else ""
        elapsed = self.last - self.start
        log.info("%s %d/%d %s (%.0f%%), %s%.0f s", self.what, self.done, self.total, self.unit, share, extra, elapsed)


def to_stderr() -> None:
    """Show progress on stderr in commands whose Hydra logging is off (``sample.py``, ``evaluate.py``)."""
    log.disabled = False  # Hydra's `job_logging: disabled` turns off every logger that exists by then, this one too
    if not log.handlers:
        handler = logging.StreamHandler()  # stderr: stdout stays the list of files written
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
