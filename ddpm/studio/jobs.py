"""Long requests as jobs: run one at a time in a worker thread, polled by the page for progress."""

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ddpm.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One request's state as the page sees it."""

    id: str
    kind: str
    state: str = "queued"  # queued -> running -> done | error
    progress: float = 0.0
    stage: str = "waiting for the model"
    result: Any = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    def update(self, fraction: float, stage: str) -> None:
        self.progress, self.stage = max(self.progress, min(fraction, 1.0)), stage

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": round(self.progress, 3),
            "stage": self.stage,
            "result": self.result,
            "error": self.error,
            "seconds": round(time.monotonic() - self.started, 1),
        }


class JobQueue:
    """Runs submitted work in one worker thread (the model serves one request at a time).

    A ``UserError`` ends a job with its message; any other exception with a short internal-error
    line (logged in full); the server goes on either way. The newest ``keep`` jobs are remembered.
    """

    def __init__(self, keep: int = 256):
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-job")

    def submit(self, kind: str, work: Callable[[Job], Any]) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], kind=kind)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        job.state, job.started = "running", time.monotonic()
        try:
            job.result = work(job)
            job.update(1.0, "done")
            job.state = "done"
        except UserError as e:
            job.error, job.state = str(e), "error"
        except Exception as e:  # noqa: BLE001 - one failed request must not stop the server
            log.exception("studio job %s (%s) failed", job.id, job.kind)
            job.error, job.state = f"internal error ({type(e).__name__}: {e}); see the server's log", "error"

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
