"""Run child processes together and stop them together (the demo's web server and worker).

Children run in their own sessions, so a Ctrl-C in the terminal reaches only this supervisor,
which forwards it exactly once (a second SIGINT would make Celery skip its warm shutdown). If a
child does not exit within ``stop_timeout`` seconds it is killed. If one child dies on its own,
the others are stopped too and the exit code reports the failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, children: Sequence[Child], env: Mapping[str, str],
                 stop_timeout: float = 15.0) -> None:
        if not children:
            raise ValueError("Supervisor needs at least one child")
        self.children = list(children)
        self.env = dict(env)
        self.stop_timeout = stop_timeout
        self._signal: int | None = None
        self._wake = threading.Event()

    def start(self) -> None:
        for child in self.children:
            child.process = subprocess.Popen(list(child.argv), env=self.env,
                                             start_new_session=True)

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signal = signum
        self._wake.set()

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        self._signal = signum
        self._wake.set()

    def wait(self, poll_seconds: float = 0.5) -> int:
        """Block until a stop signal or a child's death; stop all; return an exit code."""
        failed: Child | None = None
        while self._signal is None and failed is None:
            self._wake.wait(poll_seconds)
            failed = next((c for c in self.children
                           if c.process is not None and c.process.poll() is not None), None)
        self.stop(self._signal or signal.SIGTERM)
        if failed is not None and self._signal is None:
            assert failed.process is not None
            print(f"{failed.name} exited with code {failed.process.returncode}; stopped the rest")
            return failed.process.returncode or 1
        return 0

    def stop(self, signum: int = signal.SIGTERM) -> None:
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for child in running:
            _signal_group(child, signum)
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                print(f"{child.name} did not stop within {self.stop_timeout:.0f}s; killing it")
                _signal_group(child, signal.SIGKILL)
                child.process.wait()


def _signal_group(child: Child, signum: int) -> None:
    assert child.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signum)
