"""The reliability probe's short run, inside the normal pytest run (CI): ~1 minute of load per
backend with 30 clients, ``kill -9`` of the worker mid-retrain and of the web process, on the
default SQLite deployment and on Postgres + Redis. The full run (shipped timeouts, figures in
``tests/benchmarks/results/reliability.*``) is ``bash scripts/reliability.sh --full``.

Throughput (SQLite within 2x of Postgres) is a performance figure: the full run checks and records
it; this test asserts correctness only and prints the ratio, since on a shared 2-core runner the
two backends' rates swing with whatever else runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TEST_POSTGRES_URL, TEST_REDIS_URL, _admin_url
from tests.reliability.suite import (
    SHORT,
    problems,
    run_backend,
    throughput_problem,
    tiny_base_model,
)

pytestmark = [pytest.mark.slow, pytest.mark.celery, pytest.mark.postgres, pytest.mark.redis,
              pytest.mark.timeout(900)]


def test_short_reliability_run_loses_nothing_and_notices_the_dead_run(tmp_path: Path) -> None:
    base_model = tiny_base_model(tmp_path)
    results = [
        run_backend(name, SHORT, tmp_path / name, base_model,
                    postgres=_admin_url(TEST_POSTGRES_URL), redis=TEST_REDIS_URL)
        for name in ("sqlite", "postgres")
    ]
    found = [f"{r['backend']}: {p}" for r in results for p in problems(r)]
    print(throughput_problem(results) or "throughput: SQLite within 2x of Postgres")
    assert found == [], (found, results)
