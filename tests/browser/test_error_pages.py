"""Error pages in a real browser, for every role: a 403/404/422 in the site's layout, never a 5xx.

Against the live server (uvicorn, a SQLite file, sessions closed after every request), where the
error pages once failed with ``DetachedInstanceError`` and answered a bare 500.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import BrowserPage, LiveStack, sign_in

pytestmark = [pytest.mark.browser]

OTHER_LEAD = "other-lead@example.org"


@pytest.fixture(scope="module")
def other_lead(live: LiveStack) -> str:
    """A lead of a project of their own, and of none of the seeded ones."""
    from app.db.models import Membership, Project
    from app.domain.users import create_user

    with live.sessions() as db:
        user = create_user(db, email=OTHER_LEAD, password=live.seeded.password, role="lead")
        project = Project(name="Someone else's project", created_by_id=user.id)
        db.add(project)
        db.flush()
        db.add(Membership(project_id=project.id, user_id=user.id, role="lead"))
        db.commit()
    live.seeded.users["other_lead"] = OTHER_LEAD
    return OTHER_LEAD


def probes(live: LiveStack) -> dict[str, list[tuple[str, int]]]:
    """For each role: (path, the status its page must have). ``ann2`` annotates only tickets."""
    topics, tickets = live.seeded.topics_id, live.seeded.tickets_id
    missing = "/projects/999999"
    bad_query = f"/projects/{topics}/annotate/next?exclude=abc"
    return {
        "admin": [(missing, 404), (f"/projects/{topics}/models/999999/download", 404)],
        "lead": [(missing, 404), ("/admin", 403), (f"/projects/{topics}/annotate/next?exclude=1,x",
                                                   422)],
        "other_lead": [(missing, 404), (f"/projects/{topics}/settings", 404),
                       (f"/projects/{topics}/models/1/download", 404)],
        "annotator": [(missing, 404), (f"/projects/{topics}/settings", 403),
                      (f"/projects/{tickets}/dashboard", 403), ("/admin", 403), (bad_query, 422)],
        "ann2": [(missing, 404), (f"/projects/{topics}/annotate", 404),
                 (f"/projects/{topics}/dashboard", 404), (bad_query, 404)],
        "anonymous": [("/no/such/page", 404)],
    }


def check_error_page(page: Any, live: LiveStack, path: str, status: int, email: str | None
                     ) -> None:
    response = page.goto(f"{live.url}{path}")
    assert response is not None
    where = f"{path} as {email or 'anonymous'}"
    assert response.status == status, f"{where}: {response.status}"
    expect(page.locator("header.topbar a.brand")).to_have_text("Tapestry")
    expect(page.locator("main#main h1")).to_have_text(str(status))
    expect(page.locator("main#main [role=alert]")).not_to_be_empty()
    expect(page.get_by_role("link", name="Back to projects")).to_be_visible()
    if email is not None:  # the signed-in layout: who you are and a way out
        expect(page.locator("header.topbar .account")).to_contain_text(email)
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    # Same layout as an ordinary page: the stylesheet applied to the header.
    height = page.locator("header.topbar").evaluate("e => e.getBoundingClientRect().height")
    assert height > 20, where


@pytest.mark.parametrize("role", ["admin", "lead", "other_lead", "annotator", "ann2", "anonymous"])
def test_error_pages_per_role(
    live: LiveStack, browser_page: BrowserPage, other_lead: str, role: str
) -> None:
    page = browser_page.page
    email = None
    if role != "anonymous":
        sign_in(page, live, role)
        email = live.seeded.users[role]
    for path, status in probes(live)[role]:
        check_error_page(page, live, path, status, email)
    assert "Internal Server Error" not in live.server.log(20000)
    assert "DetachedInstanceError" not in live.server.log(20000)
