"""``tapestry demo``: seed, then run uvicorn and a real Celery worker until Ctrl-C."""

from __future__ import annotations

import os
import secrets
import sys
import time
import urllib.error
import urllib.request

from app.config import Settings
from app.demo.processes import Child, Supervisor
from app.demo.seed import DemoSeed, seed_demo

READY_TIMEOUT = 90.0
WORKER_PING_GRACE = 3.0
"""How long the demo waits for the workers' answer before printing the banner anyway: a worker busy
with the demo's first retrain answers only when that is done, and the web needs no worker."""
WORKER_QUEUES = "gpu,default,inference"  # one worker for everything (``tapestry worker -Q ...``)
SLOW_QUEUES = "gpu"
"""The demo's first worker: TAPT, adapter rounds, pool scoring (minutes each on a CPU)."""
FAST_QUEUES = "live,inference,default"
"""The demo's second worker: live-head refits and /predict, never stuck behind an adapter round."""


def web_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
            "--host", host, "--port", str(port)]


def worker_command(queues: str = WORKER_QUEUES, name: str = "worker") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "--pool=solo", "-Q", queues, "-n", f"{name}@%h", "--loglevel=INFO"]


def run_demo(settings: Settings, *, host: str, port: int, with_worker: bool) -> int:
    seed = seed_demo(settings)
    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    children = [Child("web", web_command(host, port))]
    if with_worker:
        children.append(Child("worker", worker_command(SLOW_QUEUES, "gpu")))
        children.append(Child("live", worker_command(FAST_QUEUES, "live")))
    env = dict(os.environ, TAPESTRY_DATA_DIR=str(settings.data_dir), PYTHONUNBUFFERED="1")
    supervisor = Supervisor(children, env)
    supervisor.install_signal_handlers()
    supervisor.start()
    try:
        if not _wait_for_health(base_url, supervisor):
            print(f"the web server did not become healthy at {base_url}/healthz",
                  file=sys.stderr)
            return 1
        # The worker's state on its own line, then the banner: the URL and the passwords come
        # last, once the web answers, whatever the worker is busy with.
        print(_worker_state(settings) if with_worker else "worker: not started (--no-worker)",
              flush=True)
        _print_banner(seed, base_url)
        return supervisor.wait()
    finally:
        supervisor.stop()  # no-op when wait() already stopped everyone


def _wait_for_health(base_url: str, supervisor: Supervisor) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if any(c.process is not None and c.process.poll() is not None
               for c in supervisor.children):
            return False
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def _worker_state(settings: Settings, grace: float | None = None) -> str:
    """Ping the worker through the broker; wait at most ``grace`` seconds for its answer."""
    from contract.tasks import TASK_PING, ping_path
    from worker.celery_app import celery_app

    grace = WORKER_PING_GRACE if grace is None else grace
    nonce = f"demo-{secrets.token_hex(6)}"
    started = time.monotonic()
    celery_app.send_task(TASK_PING, args=[nonce])
    path = ping_path(settings.data_dir, nonce)
    while time.monotonic() - started < grace:
        if path.exists():
            return f"worker: answered a ping in {time.monotonic() - started:.1f}s"
        time.sleep(0.2)
    return (
        f"worker: started, no answer to a ping within {grace:.0f}s yet (busy starting up or with "
        "the demo's first retrain, minutes on a CPU); labelling works meanwhile and the "
        "dashboard shows its runs"
    )


def banner(seed: DemoSeed, base_url: str) -> str:
    """What the demo prints last: where to go and how to sign in."""
    rule = "=" * 72
    lines = ["", rule]
    if seed.report is not None:
        r = seed.report
        lines.append(f"Demo data: {r.created} tickets imported ({r.by_split['pool']} pool, "
                     f"{r.by_split['dev']} dev, {r.annotations} labelled)")
    lines += [
        "Fresh passwords for this run (shown once):",
        *(f"  {c.role:<10} {c.email:<32} {c.password}" for c in seed.credentials),
        "",
        f"Tapestry demo is running: open {base_url}",
        f"  project {base_url}/projects/{seed.project_id}   health {base_url}/healthz",
        "Press Ctrl-C to stop the web server and the worker.",
        rule,
        "",
    ]
    return "\n".join(lines)


def _print_banner(seed: DemoSeed, base_url: str) -> None:
    print(banner(seed, base_url), flush=True)
