"""The demo's start-up output: the worker's state on its own line, then the URL and the passwords
last, as soon as the web answers -- never held back by a worker busy with the first retrain."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.demo import run as demo_run
from app.demo.seed import Credential, DemoSeed

SEED = DemoSeed(
    project_id=1,
    credentials=(Credential("admin", "demo-admin@tapestry.local", "pw-admin-123"),
                 Credential("lead", "demo-lead@tapestry.local", "pw-lead-456")),
    report=None,
)
URL = "http://127.0.0.1:18531"


def test_the_banner_ends_with_the_passwords_and_the_url() -> None:
    lines = [line for line in demo_run.banner(SEED, URL).splitlines() if line.strip()]
    assert lines[-1].startswith("=====")
    assert lines[-2] == "Press Ctrl-C to stop the web server and the worker."
    assert lines[-4] == f"Tapestry demo is running: open {URL}"
    tail = "\n".join(lines[-8:])
    assert "demo-lead@tapestry.local" in tail and "pw-lead-456" in tail
    assert "pw-admin-123" in tail


class FakeSupervisor:
    def __init__(self, children: Any, env: Any) -> None:
        self.children = children

    def install_signal_handlers(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...

    def wait(self) -> int:
        return 0


@pytest.fixture()
def quiet_worker(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The broker accepts the ping, but no worker answers it (busy with a retrain)."""
    from worker.celery_app import celery_app

    sent: list[Any] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args: sent.append((name, args)))
    return sent


def test_a_busy_worker_does_not_hold_back_the_banner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    quiet_worker: list[Any],
) -> None:
    monkeypatch.setattr(demo_run, "seed_demo", lambda settings: SEED)
    monkeypatch.setattr(demo_run, "Supervisor", FakeSupervisor)
    monkeypatch.setattr(demo_run, "_wait_for_health", lambda url, supervisor: True)
    monkeypatch.setattr(demo_run, "WORKER_PING_GRACE", 0.3)
    settings = Settings(data_dir=tmp_path, secret_key=secrets.token_urlsafe(48))
    assert demo_run.run_demo(settings, host="127.0.0.1", port=18531, with_worker=True) == 0
    assert len(quiet_worker) == 1, "the worker is pinged once"
    out = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    worker_line = next(i for i, line in enumerate(out) if line.startswith("worker: "))
    assert "no answer to a ping within" in out[worker_line]
    assert "WARNING" not in "\n".join(out)
    running = out.index("Tapestry demo is running: open http://127.0.0.1:18531")
    assert worker_line < running and out[-2].startswith("Press Ctrl-C")
    assert any("pw-lead-456" in line for line in out[worker_line:])


def test_an_answering_worker_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contract.tasks import ping_path
    from worker.celery_app import celery_app

    def answer(name: str, args: list[str]) -> None:
        path = ping_path(tmp_path, args[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("pong")

    monkeypatch.setattr(celery_app, "send_task", answer)
    settings = Settings(data_dir=tmp_path, secret_key=secrets.token_urlsafe(48))
    assert demo_run._worker_state(settings, grace=30).startswith("worker: answered a ping in ")


def test_without_a_worker_the_state_line_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo_run, "seed_demo", lambda settings: SEED)
    monkeypatch.setattr(demo_run, "Supervisor", FakeSupervisor)
    monkeypatch.setattr(demo_run, "_wait_for_health", lambda url, supervisor: True)
    settings = Settings(data_dir=tmp_path, secret_key=secrets.token_urlsafe(48))
    demo_run.run_demo(settings, host="0.0.0.0", port=18532, with_worker=False)
    out = capsys.readouterr().out
    assert "worker: not started (--no-worker)" in out
    assert out.index("worker: not started") < out.index("Tapestry demo is running")
