"""Progress for ``tapestry simulate``: a bar on a terminal (tqdm when installed, else a small
own bar), plain lines otherwise (a log file, CI), so a long TAPT or run is never silent."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

Log = Callable[[str], None]
BAR_WIDTH = 30
PLAIN_STEPS = 10
"""Not on a terminal: one line per tenth of the work (and the last step)."""


class BarReporter:
    """A ``ProgressReporter`` for one kind of work (``phase`` None: every phase it is given)."""

    def __init__(
        self,
        label: str,
        total: int,
        log: Log,
        *,
        phase: str | None = None,
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.label, self.total, self.log, self.phase = label, max(1, total), log, phase
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.next_line = 0
        self.bar: Any = None
        if self.tty:
            try:
                from tqdm import tqdm
            except ImportError:
                self.bar = None
            else:
                self.bar = tqdm(total=self.total, desc=label, file=self.stream, leave=True)

    def report(
        self,
        *,
        phase: str,
        step: int,
        total: int,
        metrics: Mapping[str, float] | None = None,
        message: str | None = None,
    ) -> None:
        if self.phase is not None and phase != self.phase:
            return
        self.total = max(1, total)
        step = min(step, self.total)
        detail = message or ""
        if metrics:
            detail += " " + " ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items()))
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.n = step
            self.bar.set_postfix_str(detail.strip(), refresh=True)
            if step >= self.total:
                self.bar.close()
            return
        if self.tty:
            filled = int(BAR_WIDTH * step / self.total)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            end = "\n" if step >= self.total else ""
            self.stream.write(f"\r{self.label} [{bar}] {step}/{self.total} {detail.strip()}{end}")
            self.stream.flush()
            return
        if step >= self.next_line or step >= self.total:
            self.log(f"{self.label}: {step}/{self.total} {detail.strip()}".rstrip())
            self.next_line = step + max(1, self.total // PLAIN_STEPS)

    def cancelled(self) -> bool:
        return False


def progress_reporter(label: str, total: int, log: Log, phase: str | None = None) -> BarReporter:
    return BarReporter(label, total, log, phase=phase)
