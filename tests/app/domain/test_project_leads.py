"""A project always keeps someone able to lead it (``app.domain.projects``/``admin``): the last
lead cannot be removed or demoted — in the project or globally, by an admin or by themselves."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.db.models import ROLE_ADMIN, ROLE_ANNOTATOR, ROLE_LEAD, Membership
from app.domain import admin as admin_service
from app.domain import projects as project_service
from app.errors import InvalidInput
from tests.factories import add_member, login_client, make_project, make_user


def _role(db: Session, project_id: int, user_id: int) -> str | None:
    membership = db.query(Membership).filter_by(project_id=project_id, user_id=user_id).first()
    return membership.role if membership is not None else None


def test_last_lead_cannot_demote_or_remove_themselves(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead)
    browser = login_client(app, db, user=lead)
    db.commit()

    demoted = browser.post(f"/projects/{project.id}/members",
                           data={"email": lead.email, "role": "annotator"})
    removed = browser.post(f"/projects/{project.id}/members/{lead.id}/remove")

    assert demoted.status_code == 409 and "last lead" in demoted.text
    assert removed.status_code == 409 and "last lead" in removed.text
    assert _role(db, project.id, lead.id) == ROLE_LEAD


def test_admin_cannot_demote_the_last_lead_globally_or_in_the_project(db: Session) -> None:
    admin = make_user(db, role=ROLE_ADMIN)
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, name="Tickets")

    with pytest.raises(project_service.LastLead, match="Tickets") as global_demotion:
        admin_service.set_role(db, acting=admin, user_id=lead.id, role=ROLE_ANNOTATOR)
    assert global_demotion.value.status_code == 409
    assert global_demotion.value.details["project_ids"] == [project.id]
    with pytest.raises(project_service.LastLead):
        admin_service.set_membership(db, user_id=lead.id, project_id=project.id,
                                     role=ROLE_ANNOTATOR)
    with pytest.raises(project_service.LastLead):
        admin_service.remove_membership(db, user_id=lead.id, project_id=project.id)
    assert lead.role == ROLE_LEAD and _role(db, project.id, lead.id) == ROLE_LEAD


def test_with_a_second_lead_the_first_may_step_down(db: Session) -> None:
    admin = make_user(db, role=ROLE_ADMIN)
    lead, other = make_user(db, role=ROLE_LEAD), make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead)
    project_service.add_member(db, project.id, email=other.email, role=ROLE_LEAD)

    project_service.add_member(db, project.id, email=lead.email, role=ROLE_ANNOTATOR)
    assert _role(db, project.id, lead.id) == ROLE_ANNOTATOR
    # Now `other` is the last lead: a global demotion is refused, a removal too.
    with pytest.raises(project_service.LastLead):
        admin_service.set_role(db, acting=admin, user_id=other.id, role=ROLE_ANNOTATOR)
    with pytest.raises(project_service.LastLead):
        project_service.remove_member(db, project.id, other.id)


def test_a_demoted_leads_membership_does_not_count_as_a_lead(db: Session) -> None:
    admin = make_user(db, role=ROLE_ADMIN)
    lead, demoted = make_user(db, role=ROLE_LEAD), make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead)
    add_member(db, project, demoted, ROLE_LEAD)
    admin_service.set_role(db, acting=admin, user_id=demoted.id, role=ROLE_ANNOTATOR)

    assert project_service.acting_lead_ids(db, project.id) == {lead.id}
    with pytest.raises(project_service.LastLead):
        project_service.remove_member(db, project.id, lead.id)


def test_a_global_annotator_cannot_be_made_a_project_lead(db: Session) -> None:
    project = make_project(db)
    annotator = make_user(db, role=ROLE_ANNOTATOR)
    with pytest.raises(InvalidInput, match="global annotator role"):
        project_service.add_member(db, project.id, email=annotator.email, role=ROLE_LEAD)
    with pytest.raises(InvalidInput):
        admin_service.set_membership(db, user_id=annotator.id, project_id=project.id,
                                     role=ROLE_LEAD)
    assert _role(db, project.id, annotator.id) is None
