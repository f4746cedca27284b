"""Leases under real concurrency: annotator threads on their own connections never share an item.

SQLite (a file database, so threads really contend) serialises the hand-out with a write lock;
Postgres uses ``FOR UPDATE SKIP LOCKED`` (run when a server is reachable, always in CI).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db import session as db_session
from app.db.base import Base
from app.db.models import Item, Label, Membership, Project, User
from app.db.session import make_engine, session_factory, sqlite_write_lock
from app.domain import annotation as ann

ANNOTATORS = 4
ITEMS = 48
"""Below ``annotation.MAX_EXCLUDE``, so one annotator may hold every item."""


def _seed(engine: Engine, *, per_item: int = 1) -> tuple[int, list[int]]:
    with Session(engine) as db:
        project = Project(name="race", annotations_per_item=per_item, label_budget=10_000)
        db.add(project)
        db.flush()
        db.add_all([Label(project_id=project.id, name=n, position=i)
                    for i, n in enumerate(("a", "b"))])
        users = [User(email=f"u{i}@example.org", password_hash="x") for i in range(ANNOTATORS)]
        db.add_all(users)
        db.flush()
        db.add_all([Membership(project_id=project.id, user_id=u.id) for u in users])
        db.add_all([
            Item(project_id=project.id, text=f"text {i}",
                 content_hash=hashlib.sha256(f"text {i}".encode()).hexdigest())
            for i in range(ITEMS)
        ])
        db.commit()
        return project.id, [u.id for u in users]


def _grab_all(engine: Engine, project_id: int, user_id: int, out: dict[int, list[int]],
              errors: list[BaseException]) -> None:
    sessions = session_factory(engine)
    held: list[int] = []
    try:
        while True:
            with sessions() as db:
                project = db.get(Project, project_id)
                user = db.get(User, user_id)
                assert project is not None and user is not None
                view = ann.next_item(db, project, user, lease_seconds=600, exclude=held)
                db.commit()
            if isinstance(view, ann.NoItem):
                break
            assert view.item_id not in held, "an item the page already shows came back"
            held.append(view.item_id)
    except BaseException as exc:  # surfaced by the test
        errors.append(exc)
    out[user_id] = held


def _race(engine: Engine, per_item: int = 1) -> dict[int, list[int]]:
    project_id, user_ids = _seed(engine, per_item=per_item)
    out: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_grab_all, args=(engine, project_id, uid, out, errors))
               for uid in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return out


def _assert_disjoint_cover(out: dict[int, list[int]]) -> None:
    every = [item for held in out.values() for item in held]
    assert len(every) == len(set(every)) == ITEMS, {u: len(h) for u, h in out.items()}


def test_sqlite_threads_never_share_an_item(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'race.sqlite'}")
    Base.metadata.create_all(engine)
    try:
        _assert_disjoint_cover(_race(engine))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_skip_locked_never_shares_an_item(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    Base.metadata.create_all(engine)
    try:
        _assert_disjoint_cover(_race(engine))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_overlap_gives_each_item_to_exactly_two(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    Base.metadata.create_all(engine)
    try:
        out = _race(engine, per_item=2)
    finally:
        engine.dispose()
    counts: dict[int, int] = {}
    for held in out.values():
        assert len(held) == len(set(held))  # nobody gets an item twice
        for item in held:
            counts[item] = counts.get(item, 0) + 1
    assert set(counts.values()) == {2} and len(counts) == ITEMS


# --------------------------------------------------------------------------- SQLite process lock


def _sqlite_project(tmp_path: Path) -> tuple[Engine, int]:
    engine = make_engine(f"sqlite:///{tmp_path / 'lock.sqlite'}")
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        project = Project(name="lock")
        db.add(project)
        db.commit()
        return engine, project.id


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_sqlite_write_lock_is_released_when_the_transaction_ends(
    tmp_path: Path, end: str
) -> None:
    engine, project_id = _sqlite_project(tmp_path)
    lock = sqlite_write_lock(engine)
    try:
        db = session_factory(engine)()
        ann.take_write_lock(db, project_id)
        ann.take_write_lock(db, project_id)  # again in the same transaction: no self-deadlock
        assert lock.locked()
        getattr(db, end)()
        assert not lock.locked()
        db.close()
    finally:
        engine.dispose()


def test_sqlite_writers_of_one_process_queue_instead_of_polling(tmp_path: Path) -> None:
    """A second writer waits on the process lock and starts the moment the first commits."""
    engine, project_id = _sqlite_project(tmp_path)
    sessions = session_factory(engine)
    first_holds = threading.Event()
    order: list[str] = []

    def second() -> None:
        first_holds.wait(10)
        with sessions() as db:
            ann.take_write_lock(db, project_id)
            order.append("second writes")
            db.commit()

    thread = threading.Thread(target=second)
    thread.start()
    try:
        with sessions() as db:
            ann.take_write_lock(db, project_id)
            first_holds.set()
            thread.join(0.3)
            assert thread.is_alive()  # blocked behind the first writer, not writing
            order.append("first commits")
            db.commit()
        thread.join(10)
        assert order == ["first commits", "second writes"]
    finally:
        engine.dispose()


def test_sqlite_write_lock_times_out_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.errors import ServiceBusy

    engine, project_id = _sqlite_project(tmp_path)
    monkeypatch.setattr(db_session, "WRITE_LOCK_TIMEOUT_SECONDS", 0.05)
    sessions = session_factory(engine)
    try:
        with sessions() as holder, sessions() as waiter:
            ann.take_write_lock(holder, project_id)
            with pytest.raises(ServiceBusy, match="nothing was saved"):
                ann.take_write_lock(waiter, project_id)
            holder.rollback()
            ann.take_write_lock(waiter, project_id)  # free again once the holder is done
            waiter.commit()
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- overlap routing


def _label_all(engine: Engine, project_id: int, user_id: int, out: dict[int, list[int]],
               errors: list[BaseException]) -> None:
    sessions = session_factory(engine)
    done: list[int] = []
    try:
        while True:
            with sessions() as db:
                project = db.get(Project, project_id)
                user = db.get(User, user_id)
                assert project is not None and user is not None
                view = ann.next_item(db, project, user, lease_seconds=600)
                if isinstance(view, ann.NoItem):
                    db.commit()
                    break
                label_id = ann.project_labels(db, project_id)[len(done) % 2].id
                ann.record_label(db, project, user, item_id=view.item_id, label_id=label_id)
                db.commit()
            done.append(view.item_id)
    except BaseException as exc:  # surfaced by the test
        errors.append(exc)
    out[user_id] = done


def _overlap_race(engine: Engine) -> None:
    """Issue 16: with every item an overlap item (rate 1, k 2), racing annotators that label what
    they get never label one item twice, and no item goes to more than two of them."""
    from app.db.models import OverlapItem

    project_id, user_ids = _seed(engine)
    with Session(engine) as db:
        project = db.get(Project, project_id)
        assert project is not None
        project.overlap_rate, project.overlap_k, project.gold_rate = 1.0, 2, 0.0
        db.commit()
    out: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_label_all, args=(engine, project_id, uid, out, errors))
               for uid in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with Session(engine) as db:
        marked = set(db.scalars(select(OverlapItem.item_id)))
    counts: dict[int, int] = {}
    for done in out.values():
        assert len(done) == len(set(done))  # nobody labelled an item twice
        for item in done:
            counts[item] = counts.get(item, 0) + 1
    assert len(counts) == ITEMS
    assert all(counts[i] == 1 for i in counts if i not in marked)
    assert all(counts[i] in (1, 2) for i in marked)
    assert sum(1 for i in marked if counts[i] == 2) >= ITEMS // 4


def test_sqlite_overlap_race(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'overlap.sqlite'}")
    Base.metadata.create_all(engine)
    try:
        _overlap_race(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_overlap_race(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    Base.metadata.create_all(engine)
    try:
        _overlap_race(engine)
    finally:
        engine.dispose()
