"""`tapestry demo` end to end: seeds, serves, runs a real worker, and stops cleanly on Ctrl-C.

This is the README's first command minus the virtualenv setup: a fresh data directory, real
uvicorn and Celery processes on the embedded defaults (SQLite + SQLAlchemy broker transport).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
START_DEADLINE = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.celery
@pytest.mark.slow
def test_demo_serves_signs_in_runs_a_worker_and_stops_on_sigint(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, TAPESTRY_DATA_DIR=str(tmp_path / "demo-data"), PYTHONUNBUFFERED="1")
    env.pop("TAPESTRY_SECRET_KEY", None)  # the demo generates and keeps one in the data dir
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    children: list[psutil.Process] = []
    reader = threading.Thread(
        target=lambda: lines.extend(
            line.decode(errors="replace") for line in process.stdout  # type: ignore[union-attr]
        ),
        daemon=True,
    )
    reader.start()
    try:
        deadline = time.monotonic() + START_DEADLINE
        while not any("Press Ctrl-C" in line for line in lines):
            assert process.poll() is None, "demo exited early:\n" + "".join(lines[-60:])
            assert time.monotonic() < deadline, "demo not ready:\n" + "".join(lines[-60:])
            time.sleep(0.2)
        output = "".join(lines)
        # The worker's state on its own line first (it may be busy with the first retrain),
        # then the passwords and the URL last.
        assert re.search(r"^worker: (answered a ping|started, no answer)", output, re.M), output
        assert output.index("worker: ") < output.index("Fresh passwords") < output.index(
            "Tapestry demo is running: open") < output.index("Press Ctrl-C")
        match = re.search(r"lead\s+(demo-lead@tapestry\.local)\s+(\S+)", output)
        assert match, output[-2000:]
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 2

        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        with httpx.Client(base_url=base, follow_redirects=True) as client:
            page = client.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert csrf
            signed_in = client.post("/login", data={"email": match.group(1),
                                                    "password": match.group(2),
                                                    "csrf_token": csrf.group(1)})
            assert signed_in.status_code == 200
            assert "Support tickets (demo)" in signed_in.text
            assert "2240" in signed_in.text  # the project list shows the imported items

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, "".join(lines[-40:])
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left behind: {alive}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for child in children:  # never leave a server or worker behind, even on failure
            if child.is_running():
                child.kill()
