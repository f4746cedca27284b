"""The `tapestry` command: migrations, first admin, tokens — against a throwaway SQLite file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import LAZY_COMMANDS, cli
from app.config import get_settings
from app.db.models import ApiToken, User
from app.security.passwords import verify_password
from app.security.tokens import hash_token

runner = CliRunner()


@pytest.fixture()
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("TAPESTRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TAPESTRY_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def invoke(*args: str, input: str | None = None) -> str:
    result = runner.invoke(cli, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result.output


def _head_revision() -> str | None:
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    root = Path(__file__).resolve().parents[2]
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def test_db_upgrade_then_first_admin_with_a_generated_password(cli_db: str) -> None:
    invoke("db", "upgrade")
    assert invoke("db", "current").strip() == _head_revision()
    output = invoke("user", "create", "--email", "Root@Example.org", "--role", "admin")
    password = re.search(r"password \(shown once\): (\S+)", output)
    assert password is not None
    with Session(create_engine(cli_db)) as session:
        user = session.scalar(select(User).where(User.email == "root@example.org"))
        assert user is not None and user.role == "admin"
        assert verify_password(user.password_hash, password.group(1))
        assert password.group(1) not in user.password_hash


def test_password_from_stdin_and_duplicate_user_fails(cli_db: str) -> None:
    invoke("db", "upgrade")
    output = invoke("user", "create", "--email", "a@example.org", "--password-stdin",
                    input="a long enough password\n")
    assert "shown once" not in output
    again = runner.invoke(cli, ["user", "create", "--email", "a@example.org"])
    assert again.exit_code == 1 and "already exists" in again.output
    short = runner.invoke(cli, ["user", "create", "--email", "b@example.org",
                                "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least" in short.output


def test_token_create_list_revoke(cli_db: str) -> None:
    invoke("db", "upgrade")
    invoke("user", "create", "--email", "lead@example.org", "--role", "lead")
    output = invoke("token", "create", "--email", "lead@example.org", "--scope", "read",
                    "--scope", "annotate", "--expires-days", "30")
    token = re.search(r"token \(shown once\): (tap_\S+)", output)
    assert token is not None
    with Session(create_engine(cli_db)) as session:
        stored = session.scalar(select(ApiToken))
        assert stored is not None and stored.token_hash == hash_token(token.group(1))
        assert stored.scopes == ["annotate", "read"] and stored.expires_at is not None
        token_id = stored.id
    listing = invoke("token", "list", "--email", "lead@example.org")
    assert "active" in listing and token.group(1) not in listing
    invoke("token", "revoke", str(token_id))
    assert "revoked" in invoke("token", "list", "--email", "lead@example.org")
    bad = runner.invoke(cli, ["token", "create", "--email", "lead@example.org",
                              "--scope", "root"])
    assert bad.exit_code == 1 and "scopes" in bad.output


def test_simulate_is_registered_as_a_lazy_command() -> None:
    assert "simulate" in LAZY_COMMANDS
    result = runner.invoke(cli, ["--help"])
    assert "simulate" in result.output and "demo" in result.output


# ------------------------------------------------------------------ finding the data, clean help


def test_help_is_plain_text_without_docstring_markup() -> None:
    output = runner.invoke(cli, ["--help"]).output
    assert "``" not in output and ":data:" not in output and "LAZY_COMMANDS" not in output
    assert "Usage:" in output and "TAPESTRY_DATA_DIR" in output


def _tapestry(cwd: Path, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process, with no TAPESTRY_ setting at all."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAPESTRY_")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=cwd, env=clean | (env or {}),
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("args", [
    ("token", "create", "--email", "a@example.org"),
    ("token", "list", "--email", "a@example.org"),
    ("token", "revoke", "1"),
    ("user", "create", "--email", "a@example.org"),
    ("db", "current"),
])
def test_without_a_data_dir_commands_fail_with_one_line_and_create_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    result = _tapestry(tmp_path, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Tapestry database at ")
    assert "TAPESTRY_DATA_DIR" in lines[0] and "tapestry demo" in lines[0]
    assert list(tmp_path.iterdir()) == [], "nothing may be created on the way"


def test_the_demos_data_dir_in_the_working_directory_is_found(tmp_path: Path) -> None:
    assert _tapestry(tmp_path, "db", "upgrade").returncode == 0
    assert (tmp_path / "tapestry-data" / "tapestry.sqlite").is_file()
    created = _tapestry(tmp_path, "user", "create", "--email", "lead@example.org",
                        "--role", "lead")
    assert created.returncode == 0, created.stderr
    token = _tapestry(tmp_path, "token", "create", "--email", "lead@example.org")
    assert token.returncode == 0 and "token (shown once): tap_" in token.stdout


def test_a_database_without_tables_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "tapestry-data").mkdir()
    (tmp_path / "tapestry-data" / "tapestry.sqlite").touch()
    result = _tapestry(tmp_path, "token", "list", "--email", "a@example.org")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: the database at {tmp_path / 'tapestry-data' / 'tapestry.sqlite'} has no "
        "Tapestry tables; run `tapestry db upgrade` first."
    ]


def test_from_another_directory_the_checkouts_demo_data_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.cli

    demo_dir = tmp_path / "checkout" / "tapestry-data"
    monkeypatch.setenv("TAPESTRY_DATA_DIR", str(demo_dir))
    get_settings.cache_clear()
    invoke("db", "upgrade")
    invoke("user", "create", "--email", "demo@example.org")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("TAPESTRY_DATA_DIR")
    monkeypatch.delenv("TAPESTRY_DATABASE_URL", raising=False)
    monkeypatch.setattr(app.cli, "REPO_DATA_DIR", demo_dir)
    get_settings.cache_clear()
    try:
        result = runner.invoke(cli, ["token", "list", "--email", "demo@example.org"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert f"using the demo's data directory {demo_dir}" in result.output
    assert list(elsewhere.iterdir()) == []


def test_tapt_prints_its_measured_estimate_then_queues(cli_db: str) -> None:
    from app.db.models import RUN_SUCCEEDED, RUN_TAPT, Project, TrainingRun
    from app.domain.tapt import tapt_timings
    from app.jobs import recording_jobs
    from contract.tasks import TASK_TAPT

    invoke("db", "upgrade")
    with Session(create_engine(cli_db)) as session:
        project = Project(name="cli")
        session.add(project)
        session.flush()
        project_id = project.id
        session.commit()
    first = invoke("tapt", "--project", str(project_id), "--steps", "40", "--estimate-only")
    assert "40 steps: no time estimate yet" in first
    with Session(create_engine(cli_db)) as session:
        session.add(TrainingRun(project_id=project_id, kind=RUN_TAPT, status=RUN_SUCCEEDED,
                                timings=tapt_timings(50.0, 20, 16, 128, on_gpu=False)))
        session.commit()
    with recording_jobs() as sent:
        output = invoke("tapt", "--project", str(project_id), "--steps", "40")
    assert "TAPT estimate: 40 steps ~ 2 min (measured on this machine's CPU: 2.50 s/step" in output
    assert "queued TAPT run" in output
    assert [job.name for job in sent] == [TASK_TAPT]
    with recording_jobs():
        timed = invoke("tapt", "--project", str(project_id), "--minutes", "1")
    assert "24 steps ~ 60 s" in timed and "fitted to the 60 s budget" in timed
    with Session(create_engine(cli_db)) as session:
        newest = session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc())).first()
        assert newest is not None and newest.params["tapt_config"] == {"max_minutes": 1}
    missing = runner.invoke(cli, ["tapt", "--project", "999"])
    assert missing.exit_code == 1 and "no project 999" in missing.output
