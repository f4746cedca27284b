"""``tapestry reap``: notice dead workers from the command line (or cron), without Celery beat.

Every worker already reaps at start-up, before each task and in a loop thread; this command is for
when no worker is alive to do it (all crashed) or for an operator who wants to see the decision:
runs whose heartbeat stopped are re-queued (``attempts < max_run_attempts``) or failed, queued runs
whose message was lost are re-sent. Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

from app.config import Settings, get_settings
from app.domain.runs.reaper import ReapReport


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tapestry reap",
        description="Re-queue or fail training runs whose worker died; re-send lost jobs.",
    )
    parser.add_argument("--json", action="store_true", help="Print the decisions as JSON.")
    parser.add_argument(
        "--every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Keep reaping at this interval until interrupted (a beat-less loop).",
    )
    return parser


def reap_main(
    argv: Sequence[str],
    *,
    settings: Settings | None = None,
    reap: Callable[[Settings], ReapReport] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_passes: int | None = None,
) -> int:
    """Entry point of ``tapestry reap``; returns the exit code (0, or 2 on a bad argument)."""
    args = build_parser().parse_args(list(argv))
    if args.every is not None and args.every <= 0:
        print("error: --every must be a positive number of seconds")
        return 2
    settings = settings or get_settings()
    if reap is None:
        from worker.tasks.maintenance import reap_once

        reap = reap_once
    passes = 0
    while True:
        report = reap(settings)
        print(json.dumps(asdict(report)) if args.json else f"reaper: {report.summary()}")
        passes += 1
        if args.every is None or (max_passes is not None and passes >= max_passes):
            return 0
        sleep(args.every)
