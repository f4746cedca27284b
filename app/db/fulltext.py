"""Full-text search over item texts, kept in step with ``items`` by the database itself.

* SQLite: an FTS5 table ``items_fts`` with external content (``items``), filled and kept current
  by triggers on insert, delete and update of ``text`` — so bulk inserts through Core (imports)
  and cascaded deletes are indexed without any application code; with prefix indexes for 2 and
  3 characters, so a search for a word being typed stays fast.
* Postgres: a stored generated column ``search_vector = to_tsvector('simple', text)`` with a GIN
  index (the ``simple`` configuration: no stemming, no stop words, so it works for any language
  and for codes and names). Stored, not an expression index: for a very common word the planner
  scans the table, and recomputing ``to_tsvector`` per row took 9 s at 20,000 items where the
  stored vector takes milliseconds (``tests/benchmarks/bench_data_manager.py``). The index
  keeps GIN's pending list (``fastupdate = on``, the default) so that an import adds its rows'
  words in bulk, and every import ends by merging the list into the index
  (:func:`bulk_insert`): inserting each row's words straight into the index cost 0.35 ms a
  row, 35 s of a 100,000-row import, and a pending list left behind until autovacuum made the
  planner price the index above a table scan and every search read the list. And Postgres does
  not price reading TOASTed vectors in a table scan (about 14 µs a row here, 1.4 s at 100,000
  items), so while a search runs, :func:`search_plans` turns table scans and plain index scans
  off for the transaction's statements and back on after: the search then always goes through
  the index.

Neither object is an ORM table: both are created by DDL listeners on ``items`` (so
``Base.metadata.create_all`` makes them) and by the migration. A later SQLite migration that
rebuilds ``items`` (batch mode) drops its triggers: it must call :func:`create_sqlite_search`
again (``rebuild`` refills the index from ``items``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    DDL,
    ColumnElement,
    Connection,
    Integer,
    Table,
    event,
    exc,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Select

FTS_TABLE = "items_fts"
PG_INDEX = "ix_items_text_search"
PG_COLUMN = "search_vector"
SEARCH_OBJECTS = frozenset({FTS_TABLE, PG_INDEX, PG_COLUMN}) | {
    f"{FTS_TABLE}_{suffix}" for suffix in ("data", "idx", "docsize", "config", "content")
}

# Prefix indexes for 2- and 3-character prefixes: the search box treats its last word as a
# prefix, and without them FTS5 merges the doclists of every word a short prefix expands to
# ("the" -> the, they, then, there, ...: 40 ms at 100,000 items, 0.1 ms with them). Longer
# prefixes expand to few words. About a third more disk for the search index.
SQLITE_PREFIXES = "2 3"

SQLITE_CREATE: tuple[str, ...] = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(text, content='items', "
    f"content_rowid='id', tokenize='unicode61 remove_diacritics 2', prefix='{SQLITE_PREFIXES}')",
    f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_ai AFTER INSERT ON items BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END",
    f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_ad AFTER DELETE ON items BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); END",
    f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_au AFTER UPDATE OF text ON items BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); "
    f"INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END",
)
SQLITE_REBUILD = f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')"
SQLITE_DROP: tuple[str, ...] = (
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_au",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ad",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ai",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
)
PG_CREATE: tuple[str, ...] = (
    f"ALTER TABLE items ADD COLUMN IF NOT EXISTS {PG_COLUMN} tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED",
    f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON items USING gin ({PG_COLUMN}) "
    "WITH (fastupdate = on)",
)
PG_BULK_PENDING_LIMIT = "64MB"
"""GIN's pending list may grow this large during an import before Postgres merges it (the
default, 4 MB, merges every ~15,000 rows of ticket-length text)."""
PG_DROP: tuple[str, ...] = (
    f"DROP INDEX IF EXISTS {PG_INDEX}",
    f"ALTER TABLE items DROP COLUMN IF EXISTS {PG_COLUMN}",
)

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 16


MIN_PREFIX = 2


def search_terms(query: str) -> list[str]:
    """The words of a search box entry (punctuation is a separator, never syntax)."""
    return [word.lower() for word in _WORD.findall(query)][:MAX_TERMS]


def _last_is_prefix(terms: list[str]) -> bool:
    """The last word is matched as a prefix (results follow typing) from two characters on: a
    one-character prefix matches most texts and helps no one."""
    return len(terms[-1]) >= MIN_PREFIX


@contextmanager
def bulk_insert(db: Session) -> Iterator[None]:
    """Around a bulk insert into ``items``: on Postgres new rows' words collect in the search
    index's pending list (up to :data:`PG_BULK_PENDING_LIMIT`) and are merged into the index in
    one pass at the end, in the same transaction, so no search after the commit reads a pending
    list. Nothing happens on SQLite (its triggers index each row as it comes).

    The merge needs the index's owner (the user that ran the migrations); under another user it
    is left to autovacuum, and searches stay correct, only slower until then.
    """
    if db.get_bind().dialect.name != "postgresql":
        yield
        return
    db.execute(text(f"SET LOCAL gin_pending_list_limit = '{PG_BULK_PENDING_LIMIT}'"))
    yield
    db.execute(text("SET LOCAL gin_pending_list_limit TO DEFAULT"))
    try:
        with db.begin_nested():
            db.execute(text(f"SELECT gin_clean_pending_list('{PG_INDEX}'::regclass)"))
    except exc.ProgrammingError as error:  # not the owner: autovacuum merges it later
        if getattr(error.orig, "sqlstate", None) != "42501":
            raise


def create_sqlite_search(connection: Connection, *, rebuild: bool = False) -> None:
    for statement in SQLITE_CREATE:
        connection.execute(text(statement))
    if rebuild:
        connection.execute(text(SQLITE_REBUILD))


def install(items: Table) -> None:
    """Create (and drop) the search objects together with the ``items`` table."""
    for statement in SQLITE_CREATE:
        event.listen(items, "after_create", DDL(statement).execute_if(dialect="sqlite"))
    for statement in PG_CREATE:
        event.listen(items, "after_create", DDL(statement).execute_if(dialect="postgresql"))
    for statement in SQLITE_DROP:
        event.listen(items, "before_drop", DDL(statement).execute_if(dialect="sqlite"))


def sqlite_match(query: str) -> str | None:
    """The FTS5 expression for a search box entry: every word, the last one (from two characters
    on) as a prefix, so results follow typing; ``None`` when the entry has no words."""
    terms = search_terms(query)
    if not terms:
        return None
    last = f'"{terms[-1]}"' + ("*" if _last_is_prefix(terms) else "")
    return " AND ".join([f'"{t}"' for t in terms[:-1]] + [last])


def _sqlite_ids(expression: str) -> Select[Any]:
    rowid = literal_column("rowid", type_=Integer())
    return select(rowid).select_from(text(FTS_TABLE)).where(
        text(f"{FTS_TABLE} MATCH :fts_query").bindparams(fts_query=expression)
    )


def matching_ids(dialect: str, query: str, id_column: Any) -> ColumnElement[bool]:
    """A condition: the item's text contains every word of ``query`` (the last one, from two
    characters on, as a prefix, so results follow typing). An entry without words matches
    nothing."""
    terms = search_terms(query)
    if not terms:
        return literal_column("1") == literal_column("0")
    if dialect == "sqlite":
        expression = sqlite_match(query)
        assert expression is not None
        return id_column.in_(_sqlite_ids(expression))
    tsquery = " & ".join(terms[:-1] + [terms[-1] + (":*" if _last_is_prefix(terms) else "")])
    vector: ColumnElement[Any] = literal_column(f"items.{PG_COLUMN}")
    condition: ColumnElement[bool] = vector.op("@@")(
        text("to_tsquery('simple'::regconfig, :ts_query)").bindparams(ts_query=tsquery)
    )
    return condition


def sqlite_window_end(db: Session, expression: str, *, after: int, size: int) -> int | None:
    """The id of the ``size``-th match after id ``after`` (or of the last one); ``None`` when no
    match follows. FTS5 walks its matches in rowid order from ``after`` without building them
    all."""
    rowid: ColumnElement[int] = literal_column("rowid", type_=Integer())
    window = (
        _sqlite_ids(expression)
        .where(rowid > after)
        .order_by(rowid)
        .limit(size)
        .subquery()
    )
    end = db.scalar(select(func.max(window.c.rowid)))
    return int(end) if end is not None else None


def sqlite_window(
    expression: str, id_column: Any, *, after: int, through: int
) -> ColumnElement[bool]:
    """A condition: the item matches and its id lies in ``(after, through]``."""
    rowid: ColumnElement[int] = literal_column("rowid", type_=Integer())
    return id_column.in_(
        _sqlite_ids(expression).where(rowid > after, rowid <= through)
    )


_PLANNER_SETTINGS = ("enable_seqscan", "enable_indexscan")


@contextmanager
def search_plans(db: Session, searching: bool) -> Iterator[None]:
    """On Postgres, while ``searching``, plan through the GIN index (bitmap scans only)."""
    if not searching or db.get_bind().dialect.name != "postgresql":
        yield
        return
    previous = {name: db.scalar(text(f"SELECT current_setting('{name}')"))
                for name in _PLANNER_SETTINGS}
    for name in _PLANNER_SETTINGS:
        db.execute(text(f"SELECT set_config('{name}', 'off', true)"))
    try:
        yield
    finally:
        for name, value in previous.items():
            db.execute(text("SELECT set_config(:name, :value, true)"),
                       {"name": name, "value": value})
