"""Versioned guidelines (issue 16): editing a project's guidelines adds a version, none is ever
changed or removed, and every annotation records the version it was given under
(``Annotation.guideline_version``), so agreement can later be split by version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import GuidelineVersion, Project, User
from app.domain import audit

MAX_VERSIONS_LISTED = 200


def start_versions(db: Session, project: Project, *, by: User | None) -> None:
    """Version 1: the guidelines a project is created with."""
    project.guidelines_version = 1
    db.add(
        GuidelineVersion(
            project_id=project.id,
            version=1,
            text=project.guidelines or "",
            created_by_id=by.id if by is not None else None,
        )
    )


def set_guidelines(db: Session, project: Project, text: str, *, by: User | None) -> bool:
    """Make ``text`` the project's guidelines; a change adds a version (True), the same text
    adds nothing (False)."""
    if text == (project.guidelines or ""):
        return False
    latest = db.scalar(
        select(GuidelineVersion.version)
        .where(GuidelineVersion.project_id == project.id)
        .order_by(GuidelineVersion.version.desc())
        .limit(1)
    )
    version = max(latest or 0, project.guidelines_version or 0) + 1
    db.add(
        GuidelineVersion(
            project_id=project.id,
            version=version,
            text=text,
            created_by_id=by.id if by is not None else None,
        )
    )
    project.guidelines = text
    project.guidelines_version = version
    audit.record(
        db, project.id, audit.GUIDELINES, actor=by, detail={"version": version, "chars": len(text)}
    )
    return True


@dataclass(frozen=True)
class VersionRow:
    version: int
    created_at: datetime
    author: str
    text: str
    current: bool


def guideline_history(db: Session, project: Project) -> list[VersionRow]:
    """Every version, newest first (the first :data:`MAX_VERSIONS_LISTED`)."""
    rows = db.execute(
        select(GuidelineVersion, User.email)
        .outerjoin(User, User.id == GuidelineVersion.created_by_id)
        .where(GuidelineVersion.project_id == project.id)
        .order_by(GuidelineVersion.version.desc())
        .limit(MAX_VERSIONS_LISTED)
    ).all()
    return [
        VersionRow(
            v.version, v.created_at, email or "", v.text, v.version == project.guidelines_version
        )
        for v, email in rows
    ]
