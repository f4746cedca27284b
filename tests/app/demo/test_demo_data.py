"""The bundled demo data is what the generator produces, and seeding is idempotent."""

from __future__ import annotations

import csv
import secrets
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Item, Project
from app.demo.generate import DEV_PER_LABEL, LABELS, POOL_SIZE, TICKETS_CSV, generate, write_csv
from app.demo.seed import DEMO_PROJECT, seed_demo
from app.jobs import recording_jobs
from app.security.passwords import verify_password
from contract.tasks import TASK_LIVE_REFIT, TASK_RETRAIN


def test_committed_csv_matches_the_generator(tmp_path: Path) -> None:
    fresh = tmp_path / "tickets.csv"
    write_csv(fresh)
    assert fresh.read_bytes() == TICKETS_CSV.read_bytes(), "run `python -m app.demo.generate`"


def test_generated_data_has_12_categories_seeds_and_a_dev_set() -> None:
    rows = generate()
    assert len(LABELS) == 12
    assert len(rows) == POOL_SIZE + DEV_PER_LABEL * len(LABELS)
    assert len({r["text"] for r in rows}) == len(rows)
    dev = Counter(r["label"] for r in rows if r["split"] == "dev")
    assert dev == dict.fromkeys(LABELS, DEV_PER_LABEL)
    seeds = Counter(r["label"] for r in rows if r["split"] == "pool" and r["label"])
    assert seeds == dict.fromkeys(LABELS, 3)
    with TICKETS_CSV.open(newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == ["id", "text", "label", "split"]


def test_seed_demo_is_idempotent_and_rotates_passwords(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key=secrets.token_urlsafe(48))
    with recording_jobs() as sent:
        first = seed_demo(settings)
        second = seed_demo(settings)
    # one first retrain on the seed labels, requested once (the second seed imports nothing)
    assert [job.name for job in sent if job.name != TASK_LIVE_REFIT] == [TASK_RETRAIN]
    assert [job.name for job in sent].count(TASK_LIVE_REFIT) == 1  # embeds the imported items
    assert first.report is not None and second.report is None
    assert first.report.created == POOL_SIZE + DEV_PER_LABEL * len(LABELS)
    assert first.project_id == second.project_id
    old = {c.email: c.password for c in first.credentials}
    new = {c.email: c.password for c in second.credentials}
    assert old.keys() == new.keys() and all(old[e] != new[e] for e in old)
    engine = create_engine(settings.database_url)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Project)
                              .where(Project.name == DEMO_PROJECT)) == 1
        assert session.scalar(select(func.count()).select_from(Item)) == first.report.created
        from app.db.models import User

        lead = session.scalar(select(User).where(User.email == "demo-lead@tapestry.local"))
        assert lead is not None and verify_password(lead.password_hash, new[lead.email])
    engine.dispose()
