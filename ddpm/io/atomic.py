"""Atomic file writes: a file appears under its final name only once complete.

Everything is written to a temporary name in the same folder, flushed and synced, then renamed with
``os.replace``; a crash or an error mid-write leaves the previous file (or none), never half of one.
``new_folder`` picks an output folder that no earlier run has written to.
"""

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block succeeds.

    The temporary keeps ``path``'s suffix (``.x.abc123.npz.tmp`` becomes ``x.npz``), so writers that
    add or check suffixes (numpy, soundfile) see the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def new_folder(path: str | Path) -> Path:
    """``path``, or when it already holds files ``path-2``, ``path-3``, ...: the first name that is free
    (or an empty folder), created here, so an earlier run's files are never overwritten."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for k in itertools.count(1):
        folder = path if k == 1 else path.with_name(f"{path.name}-{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            if folder.is_dir() and not any(folder.iterdir()):
                return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
