"""Full-text search over item texts, kept in step with ``items`` by the database itself.

* SQLite: an FTS5 table ``items_fts`` with external content (``items``), filled and kept current
  by triggers on insert, delete and update of ``text`` — so bulk inserts through Core (imports)
  and cascaded deletes are indexed without any application code.
* Postgres: a GIN index over ``to_tsvector('simple', text)`` (the ``simple`` configuration: no
  stemming, no stop words, so it works for any language and for codes and names).

Neither object is an ORM table: both are created by DDL listeners on ``items`` (so
``Base.metadata.create_all`` makes them) and by the migration. A later SQLite migration that
rebuilds ``items`` (batch mode) drops its triggers: it must call :func:`create_sqlite_search`
again (``rebuild`` refills the index from ``items``).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import DDL, ColumnElement, Connection, Table, event, literal_column, select, text
from sqlalchemy.sql.expression import Select

FTS_TABLE = "items_fts"
PG_INDEX = "ix_items_text_search"
SEARCH_OBJECTS = frozenset({FTS_TABLE, PG_INDEX}) | {
    f"{FTS_TABLE}_{suffix}" for suffix in ("data", "idx", "docsize", "config", "content")
}

SQLITE_CREATE: tuple[str, ...] = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(text, content='items', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
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
PG_CREATE = (
    f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON items "
    "USING gin (to_tsvector('simple'::regconfig, text))"
)
PG_DROP = f"DROP INDEX IF EXISTS {PG_INDEX}"

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 16


def search_terms(query: str) -> list[str]:
    """The words of a search box entry (punctuation is a separator, never syntax)."""
    return [word.lower() for word in _WORD.findall(query)][:MAX_TERMS]


def create_sqlite_search(connection: Connection, *, rebuild: bool = False) -> None:
    for statement in SQLITE_CREATE:
        connection.execute(text(statement))
    if rebuild:
        connection.execute(text(SQLITE_REBUILD))


def install(items: Table) -> None:
    """Create (and drop) the search objects together with the ``items`` table."""
    for statement in SQLITE_CREATE:
        event.listen(items, "after_create", DDL(statement).execute_if(dialect="sqlite"))
    event.listen(items, "after_create", DDL(PG_CREATE).execute_if(dialect="postgresql"))
    for statement in SQLITE_DROP:
        event.listen(items, "before_drop", DDL(statement).execute_if(dialect="sqlite"))


def matching_ids(dialect: str, query: str, id_column: Any) -> ColumnElement[bool]:
    """A condition: the item's text contains every word of ``query`` (the last one as a prefix,
    so results follow typing). An entry without words matches nothing."""
    terms = search_terms(query)
    if not terms:
        return literal_column("1") == literal_column("0")
    if dialect == "sqlite":
        words = [f'"{t}"' for t in terms[:-1]] + [f'"{terms[-1]}"*']
        ids: Select[Any] = select(literal_column("rowid", type_=id_column.type)).select_from(
            text(FTS_TABLE)
        ).where(text(f"{FTS_TABLE} MATCH :fts_query").bindparams(fts_query=" AND ".join(words)))
        return id_column.in_(ids)
    tsquery = " & ".join(terms[:-1] + [f"{terms[-1]}:*"])
    # Spelled exactly as the index expression, so that the planner uses the index.
    vector: ColumnElement[Any] = literal_column("to_tsvector('simple'::regconfig, items.text)")
    condition: ColumnElement[bool] = vector.op("@@")(
        text("to_tsquery('simple'::regconfig, :ts_query)").bindparams(ts_query=tsquery)
    )
    return condition
