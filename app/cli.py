"""``tapestry``: the one entry point. ``tapestry --help`` lists the commands.

serve, worker, demo, db upgrade|downgrade|current, user create|set-password, token
create|list|revoke, tapt — plus commands contributed by other packages through :data:`LAZY_COMMANDS`
(``simulate``), imported only when run so that ``tapestry serve`` never loads torch.
"""

import importlib
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from app.config import Settings

HELP = (
    "Tapestry: annotation for text classification with few labels.\n\n"
    "Start with `tapestry demo`. Commands that read the database use TAPESTRY_DATA_DIR "
    "(default ./tapestry-data, where the demo keeps its data) or TAPESTRY_DATABASE_URL."
)
cli = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP,
                  rich_markup_mode=None)
db_cli = typer.Typer(no_args_is_help=True, help="Database schema migrations (Alembic).")
user_cli = typer.Typer(no_args_is_help=True, help="User accounts (no default credentials exist).")
token_cli = typer.Typer(no_args_is_help=True, help="API tokens (Bearer tap_<prefix>_<secret>).")
cli.add_typer(db_cli, name="db")
cli.add_typer(user_cli, name="user")
cli.add_typer(token_cli, name="token")
artifacts_cli = typer.Typer(no_args_is_help=True, help="Model artifacts (sweep, retention).")
cli.add_typer(artifacts_cli, name="artifacts")

# Commands implemented elsewhere: name -> ("module", "function", "help"). The function takes the
# remaining command-line arguments (list[str]) and returns an exit code. Add one line per command.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "simulate": ("worker.simulate.cli", "main", "Offline active-learning simulations."),
    "reap": ("worker.cli_support", "reap_main", "Re-queue or fail runs whose worker died."),
}


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "tapestry-data"
"""Where ``scripts/run-demo.sh`` (run from the repository root) keeps the demo's data."""


def _settings_finding_the_demo() -> "Settings":
    """The settings; with nothing configured and no ./tapestry-data here, the demo's data dir.

    So ``tapestry token create`` works from any directory of a checkout after the demo ran.
    """
    settings = get_settings()
    configured = {"TAPESTRY_DATA_DIR", "TAPESTRY_DATABASE_URL"} & set(os.environ)
    default_dir = (Path.cwd() / "tapestry-data").resolve()
    if configured or settings.data_dir != default_dir or default_dir.exists():
        return settings
    if not (REPO_DATA_DIR / "tapestry.sqlite").is_file():
        return settings
    typer.echo(f"using the demo's data directory {REPO_DATA_DIR}", err=True)
    os.environ["TAPESTRY_DATA_DIR"] = str(REPO_DATA_DIR)
    get_settings.cache_clear()
    return get_settings()


def _existing_database() -> "Engine":
    """The installation's database, or exit with one clear line (nothing created on the way).

    Without TAPESTRY_DATA_DIR/TAPESTRY_DATABASE_URL this is ./tapestry-data, where the demo keeps
    its data. A missing SQLite file, a database without tables, or a server that cannot be
    reached is reported as such -- no traceback, and no empty data directory left behind.
    """
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from app.db.session import get_engine

    settings = _settings_finding_the_demo()
    where = settings.database_url
    if settings.is_sqlite:
        path = Path(make_url(settings.database_url).database or "")
        where = str(path)
        if not path.is_file():
            _fail(
                f"no Tapestry database at {path}. Run this in the directory where "
                "`tapestry demo` ran (it keeps ./tapestry-data), set TAPESTRY_DATA_DIR to the "
                "data directory, or create a database with `tapestry db upgrade`."
            )
    try:
        engine = get_engine(settings)
        has_schema = inspect(engine).has_table("users")
    except SQLAlchemyError as exc:
        _fail(f"cannot open the database at {where}: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0]}")
    if not has_schema:
        _fail(f"the database at {where} has no Tapestry tables; run `tapestry db upgrade` first.")
    return engine


# --------------------------------------------------------------------------- serve / worker


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
) -> None:
    """Run the web application (uvicorn)."""
    import uvicorn

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port,
                workers=None if reload else workers, reload=reload, proxy_headers=True)


@cli.command()
def worker(
    queues: Annotated[str, typer.Option(
        "--queues", "-Q",
        help="Comma-separated queues. Default: two processes, one for 'gpu' and one for "
        "'live,inference,default', so live-head refits never wait for an adapter round.",
    )] = "",
    pool: Annotated[str, typer.Option(help="Celery pool; solo runs tasks in-process.")] = "solo",
    concurrency: Annotated[int, typer.Option(help="Processes for prefork pools.")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker on the configured broker."""
    if not queues:
        raise typer.Exit(code=_run_worker_pair(pool, concurrency, loglevel))
    from worker.celery_app import celery_app

    celery_app.worker_main([
        "worker", f"--pool={pool}", f"--concurrency={concurrency}", "-Q", queues,
        f"--loglevel={loglevel}",
    ])


def _run_worker_pair(pool: str, concurrency: int, loglevel: str) -> int:
    """The default: a slow worker (adapter rounds, TAPT) and a fast one (live head, /predict)."""
    import os

    from app.demo.processes import Child, Supervisor
    from app.demo.run import FAST_QUEUES, SLOW_QUEUES, worker_command

    children = []
    for name, queues in (("gpu", SLOW_QUEUES), ("live", FAST_QUEUES)):
        command = worker_command(queues, name)
        command[command.index("--pool=solo")] = f"--pool={pool}"
        command[command.index("--loglevel=INFO")] = f"--loglevel={loglevel}"
        command.append(f"--concurrency={concurrency}")
        children.append(Child(name, command))
    supervisor = Supervisor(children, dict(os.environ))
    supervisor.install_signal_handlers()
    supervisor.start()
    try:
        return supervisor.wait()
    finally:
        supervisor.stop()


@cli.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface for the web server.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the web server.")] = 8000,
    with_worker: Annotated[bool, typer.Option("--worker/--no-worker",
                                              help="Also run a Celery worker.")] = True,
) -> None:
    """Migrate, seed a demo project and users (fresh passwords), then run web + worker."""
    from app.demo.run import run_demo

    raise typer.Exit(code=run_demo(get_settings(), host=host, port=port, with_worker=with_worker))


# --------------------------------------------------------------------------- db


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from app.db.migrate import upgrade

    settings = get_settings()
    settings.ensure_dirs()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. base.")]
                 ) -> None:
    """Revert migrations down to REVISION."""
    from app.db.migrate import downgrade

    _existing_database()
    downgrade(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@db_cli.command("current")
def db_current() -> None:
    """Print the database's current revision."""
    from app.db.migrate import current_revision

    settings = _settings_finding_the_demo()
    if settings.is_sqlite:
        from sqlalchemy.engine import make_url

        if not Path(make_url(settings.database_url).database or "").is_file():
            _existing_database()  # reports the missing file, creates nothing
    typer.echo(current_revision(settings.database_url) or "(empty database)")


# --------------------------------------------------------------------------- users


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated?) — read from stdin, or freshly generated and shown once."""
    from app.security.passwords import generate_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            _fail("no password on stdin")
        return password, False
    return generate_password(), True


@user_cli.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Sign-in e-mail.")],
    role: Annotated[str, typer.Option(help="admin, lead or annotator.")] = "annotator",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from stdin instead of generating one.")
    ] = False,
) -> None:
    """Create a user. The first admin of an installation is made with this command."""
    from app.db.session import session_scope
    from app.domain.users import create_user
    from app.errors import DomainError

    password, generated = _read_password(password_stdin)
    try:
        with session_scope(_existing_database()) as session:
            user = create_user(session, email=email, password=password, role=role, name=name)
            summary = f"created {user.role} {user.email} (id {user.id})"
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(summary)
    if generated:
        typer.echo(f"password (shown once): {password}")


@user_cli.command("set-password")
def user_set_password(
    email: Annotated[str, typer.Option(help="The user's e-mail.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Give a user a new password (ends their sessions)."""
    from app.db.session import session_scope
    from app.domain.users import get_user_by_email, set_password
    from app.errors import DomainError

    password, generated = _read_password(password_stdin)
    try:
        with session_scope(_existing_database()) as session:
            user = get_user_by_email(session, email)
            if user is None:
                _fail(f"no user {email}")
            assert user is not None
            set_password(session, user, password)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"password changed for {email}")
    if generated:
        typer.echo(f"password (shown once): {password}")


# --------------------------------------------------------------------------- tokens


@token_cli.command("create")
def token_create(
    email: Annotated[str, typer.Option(help="Owner of the token.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    scope: Annotated[list[str] | None, typer.Option(
        help="read, annotate or admin; repeatable.")] = None,
    project: Annotated[int | None, typer.Option(help="Limit the token to one project id.")
                       ] = None,
    expires_days: Annotated[int | None, typer.Option(help="Expire after N days.")] = None,
) -> None:
    """Create an API token; the token itself is printed once and never stored."""
    from app.db.session import session_scope
    from app.domain.users import create_token, get_user_by_email
    from app.errors import DomainError

    expires_at = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    try:
        with session_scope(_existing_database()) as session:
            user = get_user_by_email(session, email)
            if user is None:
                _fail(f"no user {email}")
            assert user is not None
            issued = create_token(session, user=user, name=name, scopes=scope or ["read"],
                                  project_id=project, expires_at=expires_at)
            token_id = issued.token.id
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"token {token_id} for {email}, scopes {scope or ['read']}"
               + (f", project {project}" if project else ", all projects")
               + (f", expires {expires_at:%Y-%m-%d}" if expires_at else ""))
    typer.echo(f"token (shown once): {issued.plaintext}")


@token_cli.command("list")
def token_list(email: Annotated[str, typer.Option(help="Owner of the tokens.")]) -> None:
    """List a user's tokens (prefix, scopes, state)."""
    from app.db.session import session_scope
    from app.domain.users import get_user_by_email, list_tokens

    with session_scope(_existing_database()) as session:
        user = get_user_by_email(session, email)
        if user is None:
            _fail(f"no user {email}")
        assert user is not None
        for token in list_tokens(session, user.id):
            state = "revoked" if token.revoked_at else "active"
            typer.echo(f"{token.id}\ttap_{token.prefix}_…\t{','.join(token.scopes)}\t"
                       f"project={token.project_id or '*'}\t{state}\t{token.name}")


@token_cli.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="Token id (see token list).")]
                 ) -> None:
    """Revoke a token at once."""
    from app.db.session import session_scope
    from app.domain.users import revoke_token
    from app.errors import DomainError

    try:
        with session_scope(_existing_database()) as session:
            revoke_token(session, token_id)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"token {token_id} revoked")


# --------------------------------------------------------------------------- TAPT


@cli.command()
def tapt(
    project: Annotated[int, typer.Option(help="Project id.")],
    steps: Annotated[int | None, typer.Option(
        min=1, max=100_000, help="TAPT steps (default: the worker's default budget).")] = None,
    minutes: Annotated[int | None, typer.Option(
        min=1, max=7 * 24 * 60,
        help="Time budget: the steps are fitted to this machine's pace and the run stops by "
             "then.")] = None,
    estimate_only: Annotated[bool, typer.Option(
        "--estimate-only", help="Only print how long it should take here.")] = False,
) -> None:
    """Queue task-adaptive pretraining for a project; first prints how long it should take."""
    from app.db.models import Project
    from app.db.session import session_scope
    from app.domain.runs import request_tapt
    from app.domain.tapt import estimate_tapt_seconds
    from app.errors import DomainError

    try:
        with session_scope(_existing_database()) as session:
            found = session.get(Project, project)
            if found is None:
                _fail(f"no project {project}")
            assert found is not None
            config = ({"max_steps": steps} if steps else {}) | (
                {"max_minutes": minutes} if minutes else {})
            estimate = estimate_tapt_seconds(session, found, steps, config)
            typer.echo(f"TAPT estimate: {estimate.text}")
            if estimate_only:
                return
            run = request_tapt(session, found, reason="requested from the command line",
                               config=config or None)
            run_id = run.id
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"queued TAPT run {run_id} for project {project}; a worker picks it up "
               f"(progress: /admin/projects/{project}/runs/{run_id})")


# --------------------------------------------------------------------------- lazy commands


def _register_lazy(name: str, module: str, function: str, help_text: str) -> None:
    @cli.command(name, help=help_text, add_help_option=False,
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def _run(ctx: typer.Context) -> None:
        target = getattr(importlib.import_module(module), function)
        raise typer.Exit(code=int(target(list(ctx.args)) or 0))


for _name, (_module, _function, _help) in LAZY_COMMANDS.items():
    _register_lazy(_name, _module, _function, _help)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1" if get_settings().hf_offline else "0")
    cli()


if __name__ == "__main__":
    main()


# --------------------------------------------------------------------------- artifacts


@artifacts_cli.command("sweep")
def artifacts_sweep(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be removed; change nothing.")] = False,
) -> None:
    """Remove failed/cancelled runs' directories and stale temporary files; apply retention
    (TAPESTRY_KEEP_VERSIONS newest versions per project, plus pinned and current ones)."""
    from app.db.session import session_scope
    from app.domain.artifact_hygiene import sweep_artifacts

    settings = _settings_finding_the_demo()
    with session_scope(_existing_database()) as session:
        report = sweep_artifacts(session, settings, dry_run=dry_run)
    for path in report.removed:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {path}")
    typer.echo(report.summary())
