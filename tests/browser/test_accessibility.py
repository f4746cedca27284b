"""Accessible basics at 1280x800: named controls, keyboard reach, visible focus, no overflow."""

from __future__ import annotations

import pytest

from tests.browser.conftest import BrowserPage, LiveStack, sign_in

pytestmark = [pytest.mark.browser]

UNNAMED_CONTROLS = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button')).filter(el => {
  if (!el.offsetParent && getComputedStyle(el).position !== 'fixed') return false;  // hidden
  const label = el.id && document.querySelector(`label[for="${el.id}"]`);
  const named = el.closest('label') || label || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim());
  return !named;
}).map(el => el.outerHTML.slice(0, 120))"""
OVERFLOW = "() => document.documentElement.scrollWidth > window.innerWidth + 1"


def _pages(live: LiveStack) -> dict[str, tuple[str, list[str]]]:
    topics, tickets = live.seeded.topics_id, live.seeded.tickets_id
    return {
        "annotator": ("annotator", [f"/projects/{topics}/annotate"]),
        "lead": ("lead", [f"/projects/{tickets}/{page}"
                          for page in ("dashboard", "runs", "models", "settings", "review",
                                       "audit", "guidelines")]),
        "admin": ("admin", ["/admin/users", "/admin/tokens", "/admin/projects"]),
    }


@pytest.mark.parametrize("who", ["annotator", "lead", "admin"])
def test_every_control_is_named_and_pages_fit_1280_wide(
    live: LiveStack, browser_page: BrowserPage, who: str
) -> None:
    page = browser_page.page
    user, paths = _pages(live)[who]
    sign_in(page, live, user)
    for path in paths:
        page.goto(f"{live.url}{path}")
        assert page.evaluate(UNNAMED_CONTROLS) == [], path
        assert not page.evaluate(OVERFLOW), f"{path} scrolls sideways at 1280 px"


def test_label_buttons_are_reachable_by_tab_with_a_visible_focus_ring(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    sign_in(page, live, "annotator")
    page.goto(f"{live.url}/projects/{live.seeded.markup_id}/annotate")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('label-btn')"):
            break
    else:
        raise AssertionError("Tab never reached a label button")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
