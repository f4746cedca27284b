"""Test-only pause points, so crash tests can kill a worker at an exact moment.

With ``TAPESTRY_TEST_PAUSE_AT=<name>`` in a worker's environment, reaching :func:`pause_point`
with that name writes ``<name>.reached`` (holding the pid) into ``TAPESTRY_TEST_PAUSE_DIR`` and
blocks until ``<name>.release`` appears there. The test waits for the first file, then sends
``kill -9``: no timing guesses. Unset (always, outside tests) a pause point is one dict lookup.

Names used by the tasks: ``training`` (after the first training step), ``promotion`` (the new
version's files are written and fsynced in the temporary directory, not yet renamed into place)
and ``promotion_commit`` (renamed into place, the promotion transaction flushed, not committed).

These two variables are read here rather than through ``Settings`` on purpose: they are not
configuration a deployment may set, and keeping them out of the settings object keeps them out of
``--help`` and ``.env`` files.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

PAUSE_AT_ENV = "TAPESTRY_TEST_PAUSE_AT"
PAUSE_DIR_ENV = "TAPESTRY_TEST_PAUSE_DIR"
PAUSE_POINTS = ("training", "promotion", "promotion_commit")
MAX_PAUSE_SECONDS = 600.0
_POLL_SECONDS = 0.05


def pause_point(name: str) -> None:
    """Block here if a crash test asked for it (see the module docstring); else return at once."""
    if name not in PAUSE_POINTS:
        raise ValueError(f"unknown pause point {name!r}; known: {', '.join(PAUSE_POINTS)}")
    if os.environ.get(PAUSE_AT_ENV) != name:
        return
    directory = Path(os.environ.get(PAUSE_DIR_ENV) or tempfile.gettempdir())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.reached").write_text(str(os.getpid()))
    release = directory / f"{name}.release"
    deadline = time.monotonic() + MAX_PAUSE_SECONDS
    while not release.exists():  # the paused process itself waits; tests never sleep
        if time.monotonic() > deadline:
            raise TimeoutError(f"pause point {name!r} was never released")
        time.sleep(_POLL_SECONDS)
