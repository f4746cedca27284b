"""The `tapestry` command: migrations, first admin, tokens — against a throwaway SQLite file."""

from __future__ import annotations

import re
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


def test_db_upgrade_then_first_admin_with_a_generated_password(cli_db: str) -> None:
    invoke("db", "upgrade")
    assert invoke("db", "current").strip() == "0002_i13a"
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
