"""A live Tapestry for the browser tests: uvicorn and a Celery worker as real subprocesses on a
temporary SQLite file database (embedded SQLAlchemy broker), driven by Debian's Chromium.

The stack is started once per test session. Chromium runs headless through Playwright with the
system binary (never ``playwright install``). Every page records JavaScript dialogs: a test that
sees one fails, which is how the XSS checks catch an ``alert(1)`` that ran.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.base import Base
from app.db.session import make_engine
from tests.browser.seed import Seeded, seed_all

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 800}
START_TIMEOUT = 60.0
WORKER_TIMEOUT = 180.0


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0,
               interval: float = 0.1) -> Any:
    """Poll ``condition`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self, chars: int = 8000) -> str:
        return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


@dataclass
class LiveStack:
    url: str
    settings: Settings
    engine: Engine
    seeded: Seeded
    server: Process
    worker: Process
    sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = sessionmaker(bind=self.engine, expire_on_commit=False)

    def wait_for_worker(self) -> None:
        def ready() -> bool:
            if self.worker.popen.poll() is not None:
                raise AssertionError(f"the worker exited:\n{self.worker.log()}")
            return b" ready." in self.worker.log_path.read_bytes()

        wait_until(ready, "the Celery worker to start", timeout=WORKER_TIMEOUT)


def _spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, popen, log_path)


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    from tests.worker.ml.tiny import make_tiny_bert

    root = tmp_path_factory.mktemp("browser-stack")
    data_dir = root / "data"
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{root / 'tapestry.sqlite'}",
        broker_url=f"sqla+sqlite:///{root / 'broker.sqlite'}",
        artifact_dir=data_dir / "artifacts",
        secret_key=secrets.token_urlsafe(48),
        heartbeat_seconds=0.5,
    )
    settings.ensure_dirs()
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    tiny = make_tiny_bert(root / "tiny-bert")
    with Session(engine) as db:
        seeded = seed_all(db, settings, tiny)
        db.commit()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPESTRY_")}
    env |= {
        "TAPESTRY_DATA_DIR": str(data_dir),
        "TAPESTRY_DATABASE_URL": settings.database_url,
        "TAPESTRY_BROKER_URL": settings.broker_url,
        "TAPESTRY_ARTIFACT_DIR": str(settings.artifacts),
        "TAPESTRY_SECRET_KEY": settings.secret_key,
        "TAPESTRY_HEARTBEAT_SECONDS": "0.5",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    worker = _spawn("worker", [
        sys.executable, "-m", "celery", "-A", "worker.celery_app:celery_app", "worker",
        "--pool=solo", "-Q", "gpu,default,inference", "--loglevel=INFO",
        "--without-heartbeat", "--without-mingle", "--without-gossip",
    ], env, root)
    server = _spawn("server", [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ], env, root)
    url = f"http://127.0.0.1:{port}"
    stack = LiveStack(url, settings, engine, seeded, server, worker)
    try:
        def healthy() -> bool:
            if server.popen.poll() is not None:
                raise AssertionError(f"the server exited:\n{server.log()}")
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, "the web server to answer /healthz", timeout=START_TIMEOUT)
        yield stack
    finally:
        server.stop()
        worker.stop()
        engine.dispose()
        for process in (server, worker):
            sys.stderr.write(f"\n----- {process.name} log (tail) -----\n{process.log(3000)}\n")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class BrowserPage:
    """A fresh browser context (own cookies) and page, with every JS dialog recorded."""

    page: Any
    dialogs: list[str]
    console: list[str] = field(default_factory=list)


@pytest.fixture()
def browser_page(chromium: Any) -> Iterator[BrowserPage]:
    context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(15_000)
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    recorded = BrowserPage(page, dialogs)
    page.on("console", lambda msg: recorded.console.append(f"console.{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: recorded.console.append(f"page error: {exc}"))
    try:
        yield recorded
    finally:
        if recorded.console:
            sys.stderr.write("\n----- browser console -----\n" + "\n".join(recorded.console))
        context.close()
    assert not dialogs, f"a JavaScript dialog fired: {dialogs}"


def sign_in(page: Any, live: LiveStack, who: str) -> None:
    page.goto(f"{live.url}/login")
    page.get_by_label("E-mail").fill(live.seeded.users[who])
    page.get_by_label("Password").fill(live.seeded.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live.url}/projects")


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
