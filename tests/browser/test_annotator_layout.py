"""The annotator view on a phone (390 px), in the dark colour scheme, and accepting the model's
guess with Enter, in real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.models import Annotation, Item, Label
from tests.browser.conftest import (
    BrowserPage,
    LiveStack,
    screenshot,
    sign_in,
    wait_until,
)
from tests.browser.seed import FEEDBACK

pytestmark = [pytest.mark.browser]
PHONES = {360: {"width": 360, "height": 740}, 390: {"width": 390, "height": 844}}

LAYOUT = """() => {
  const text = document.querySelector('#item-slot .item-text');
  const main = document.querySelector('#item-slot .item-main');
  const why = document.querySelector('#item-slot .why');
  const t = text.getBoundingClientRect(), w = why.getBoundingClientRect();
  const line = parseFloat(getComputedStyle(text).lineHeight);
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          textWidth: t.width, textLines: Math.round(text.scrollHeight / line),
          chars: text.textContent.length, mainBottom: main.getBoundingClientRect().bottom,
          whyTop: w.top, whyLeft: w.left, textLeft: t.left};
}"""


@pytest.fixture(params=sorted(PHONES))
def phone_page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[BrowserPage]:
    context = chromium.new_context(viewport=PHONES[request.param], device_scale_factor=1,
                                   is_mobile=True, has_touch=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        yield BrowserPage(page, dialogs)
    finally:
        context.close()
    assert not dialogs


def _open_feedback(page: Any, live: LiveStack) -> None:
    sign_in(page, live, "annotator")
    page.goto(f"{live.url}/projects/{live.seeded.feedback_id}/annotate")
    expect(page.locator("#item-slot .item-text")).to_be_visible()


def test_annotator_fits_a_phone_390_and_360_px(live: LiveStack, phone_page: BrowserPage) -> None:
    page = phone_page.page
    _open_feedback(page, live)
    m = page.evaluate(LAYOUT)
    width = m["innerWidth"]
    assert m["scrollWidth"] <= width, f"sideways scroll at {width} px: {m}"
    # the text uses most of the width: words wrap, not characters
    assert m["textWidth"] >= 0.75 * m["innerWidth"], m
    assert m["textLines"] < m["chars"] / 15, f"text wraps almost per character: {m}"
    # the side panel is stacked below the text, not squeezed next to it
    assert m["whyTop"] >= m["mainBottom"] - 1 and abs(m["whyLeft"] - m["textLeft"]) < 40, m
    for selector in ("#item-slot .label-btn", "#recent-labels", ".annotator-bar"):
        box = page.locator(selector).first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, selector
    if width == 390:
        screenshot(page, "annotator-390", full_page=True)


def test_dark_scheme_is_followed(live: LiveStack, browser_page: BrowserPage) -> None:
    page = browser_page.page
    page.emulate_media(color_scheme="dark")
    _open_feedback(page, live)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    text_bg = page.evaluate(
        "getComputedStyle(document.querySelector('#item-slot .item-text')).backgroundColor")
    colour = page.evaluate("getComputedStyle(document.body).color")

    def luminance(css: str) -> float:
        r, g, b = (int(v) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    assert luminance(background) < 0.2, background
    assert luminance(text_bg) < 0.25, text_bg
    assert luminance(colour) > 0.7, colour
    screenshot(page, "annotator-dark")
    page.emulate_media(color_scheme="light")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert luminance(light) > 0.9, light


def test_enter_accepts_the_models_guess(live: LiveStack, browser_page: BrowserPage) -> None:
    page = browser_page.page
    _open_feedback(page, live)
    card = page.locator("#item-slot .item-card")
    item_id = int(card.get_attribute("data-item-id") or 0)
    guess_id = int(card.get_attribute("data-guess-label-id") or 0)
    expect(card.locator(".accept-guess")).to_contain_text("Accept guess")
    page.keyboard.press("?")
    expect(page.locator("#help-dialog")).to_contain_text("Accept the model's guess")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    expect(card).not_to_have_attribute("data-item-id", str(item_id))
    expect(page.locator("#save-state")).to_have_text("All labels saved")

    def saved() -> Annotation | None:
        with live.sessions() as db:
            return db.scalars(select(Annotation).where(
                Annotation.item_id == item_id, Annotation.source == "ui",
                Annotation.deleted.is_(False))).first()

    annotation = wait_until(saved, "the accepted guess to be saved")
    with live.sessions() as db:
        label = db.get(Label, annotation.label_id)
        item = db.get(Item, item_id)
        assert label is not None and item is not None and annotation.label_id == guess_id
        # the seeded guess for each text is its true label, at 62 %
        assert label.name == next(name for name, text in FEEDBACK if text == item.text)
    expect(page.locator("#recent-labels .recent-text").first).to_be_visible()
    screenshot(page, "annotator-desktop", full_page=True)
