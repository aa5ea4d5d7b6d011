"""User-facing errors: bad input ends in one line naming the field or file and exit status 2."""

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input from the user (a value, a file, a checkpoint): the message names it and what was expected."""


class ConfigError(UserError, ValueError):
    """A config value that is unknown, of the wrong type or out of range."""


class MissingFileError(UserError, FileNotFoundError):
    """An input file or folder named by the config does not exist."""


def run_or_exit(fn: Callable[[], T]) -> T:
    """Run an entry point's work; a ``UserError`` becomes ``error: <message>`` on stderr and exit 2."""
    try:
        return fn()
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
