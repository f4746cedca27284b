"""The demo supervisor forwards one stop signal, waits, and kills what does not stop."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from app.demo.processes import Child, Supervisor

GRACEFUL = """
import signal, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
def stop(signum, frame):
    out.write_text(f"got {signum}")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
out.with_suffix(".ready").write_text("ready")
while True:
    time.sleep(0.1)
"""
STUBBORN = """
import signal, sys, time, pathlib
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
pathlib.Path(sys.argv[1]).with_suffix(".ready").write_text("ready")
while True:
    time.sleep(0.1)
"""

CRASHER = """
import pathlib, sys, time
while not pathlib.Path(sys.argv[1]).exists():  # crash only once the other child listens
    time.sleep(0.05)
sys.exit(3)
"""


def _wait_ready(*paths: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.with_suffix(".ready").exists() for p in paths):
        assert time.monotonic() < deadline, "children did not start"
        time.sleep(0.05)


def test_stop_forwards_the_signal_and_kills_after_the_timeout(tmp_path: Path) -> None:
    polite, stubborn = tmp_path / "polite.txt", tmp_path / "stubborn.txt"
    supervisor = Supervisor(
        [Child("polite", [sys.executable, "-c", GRACEFUL, str(polite)]),
         Child("stubborn", [sys.executable, "-c", STUBBORN, str(stubborn)])],
        env=dict(os.environ), stop_timeout=1.0,
    )
    supervisor.start()
    _wait_ready(polite, stubborn)
    supervisor.request_stop(signal.SIGINT)
    assert supervisor.wait(poll_seconds=0.05) == 0
    assert polite.read_text() == f"got {int(signal.SIGINT)}"
    codes = {c.name: c.process.returncode for c in supervisor.children if c.process}
    assert codes["polite"] == 0 and codes["stubborn"] == -signal.SIGKILL


def test_a_dying_child_stops_the_others_and_fails(tmp_path: Path) -> None:
    polite = tmp_path / "polite.txt"
    supervisor = Supervisor(
        [Child("polite", [sys.executable, "-c", GRACEFUL, str(polite)]),
         Child("crasher", [sys.executable, "-c", CRASHER, str(polite.with_suffix(".ready"))])],
        env=dict(os.environ), stop_timeout=5.0,
    )
    supervisor.start()
    assert supervisor.wait(poll_seconds=0.05) == 3
    polite_child = supervisor.children[0]
    assert polite_child.process is not None and polite_child.process.returncode == 0
