"""Engine and session factory. The edge (request dependency or task wrapper) owns transactions."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, TextClause, create_engine, event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

from app.config import Settings, get_settings


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        # A connection per request thread (Starlette's pool has 40): a request queued on the
        # process write lock holds its connection, and with SQLAlchemy's default 5 + 10 the
        # 16th concurrent request failed with a pool timeout (500) after 30 s. SQLite
        # connections are cheap file handles.
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 40)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return make_engine(url)


def get_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    if settings.is_sqlite:
        settings.ensure_dirs()
    return _engine_for(settings.database_url)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A unit of work for scripts and tasks: commit on success, roll back on error."""
    session = session_factory(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --------------------------------------------------------------------------- SQLite write order
#
# SQLite has one writer at a time. Within a process, every transaction that writes first queues on
# a process-wide FIFO lock, *then* takes SQLite's lock with its first write, and lets both go when
# it ends. One order for every write (process lock -> SQLite lock): a transaction never holds
# SQLite's write lock while it waits for the process lock, which is the inversion that stalled the
# web process for 30 s ("database is locked") when an auth-path write ran outside the process lock.
# Writers of other processes (the worker) still meet SQLite's own lock and its busy timeout.

WRITE_LOCK_TIMEOUT_SECONDS = 30.0
_HELD_LOCK = "tapestry.sqlite_write_lock"


class FifoLock:
    """A lock granted in arrival order (``threading.Lock`` lets a releasing thread barge back in,
    which under 30 writers starved some of them up to the timeout)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self, timeout: float = -1) -> bool:
        with self._guard:
            if not self._held:
                self._held = True
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=timeout):
            return True  # the previous holder handed the lock over
        with self._guard:
            if turn in self._waiters:
                self._waiters.remove(turn)
                return False
        return True  # handed over just as the wait timed out: it is ours now

    def release(self) -> None:
        with self._guard:
            if not self._held:
                raise RuntimeError("release of an unheld FifoLock")
            if self._waiters:
                self._waiters.popleft().release()  # stays held, by the next in line
            else:
                self._held = False

    def locked(self) -> bool:
        with self._guard:
            return self._held


_process_locks: dict[str, FifoLock] = {}
_process_locks_guard = threading.Lock()


def sqlite_write_lock(engine: Engine) -> FifoLock:
    """The process-wide write lock of one SQLite database."""
    with _process_locks_guard:
        return _process_locks.setdefault(str(engine.url), FifoLock())


def hold_sqlite_write_lock(session: Session) -> None:
    """Queue for this process's write lock unless the session's transaction already holds it.

    Called before every write of a session on SQLite (flush, ORM insert/update/delete); a no-op
    on other databases. Held until the session's outermost transaction ends. After
    ``WRITE_LOCK_TIMEOUT_SECONDS`` it gives up with :class:`~app.errors.ServiceBusy` (503),
    before anything was written.
    """
    if _HELD_LOCK in session.info:
        return
    bind: Any = session.get_bind()
    if bind.dialect.name != "sqlite":
        return
    lock = sqlite_write_lock(bind.engine)
    if not lock.acquire(timeout=WRITE_LOCK_TIMEOUT_SECONDS):
        from app.errors import ServiceBusy

        raise ServiceBusy("The database is busy with other writes; nothing was saved. Try again.")
    session.info[_HELD_LOCK] = lock


@event.listens_for(Session, "before_flush")
def _lock_before_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.deleted or session.dirty:
        hold_sqlite_write_lock(session)


_TEXT_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")


@event.listens_for(Session, "do_orm_execute")
def _lock_before_dml(state: ORMExecuteState) -> None:
    statement = state.statement
    textual_write = isinstance(statement, TextClause) and (  # kombu: "BEGIN IMMEDIATE ..."
        " ".join(statement.text.split()[:2]).upper().startswith(_TEXT_WRITES)
    )
    if state.is_insert or state.is_update or state.is_delete or textual_write:
        hold_sqlite_write_lock(state.session)


@event.listens_for(Session, "after_transaction_end")
def _release_sqlite_write_lock(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: commit, rollback or close
        lock: FifoLock | None = session.info.pop(_HELD_LOCK, None)
        if lock is not None:
            lock.release()
