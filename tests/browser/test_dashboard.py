"""The dashboard fits the screen in Chromium: on a desktop and on a phone its twelve-column
table scrolls inside its own box and the page itself never scrolls sideways."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.analysis.report_study import build_hand_study
from tests.browser.conftest import screenshot
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

WIDTHS = {"desktop": (1000, 900), "phone": (390, 844)}


def page_overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0 or less: it fits)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def test_the_dashboard_fits_desktop_and_phone_widths(live_server, page: Page, researcher) -> None:
    study = build_hand_study(researcher).study
    page.goto(f"{live_server.url}/researcher/studies/{study.pk}/dashboard/")
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#dashboard-settings")).to_be_visible()

    for name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.reload()
        chart = page.locator("#chart-psychometric img")
        expect(chart).to_be_visible()
        page.wait_for_function(
            "() => [...document.images].every(image => image.complete && image.naturalWidth > 0)"
        )

        assert page_overflow(page) <= 0, name
        screenshot(page, f"dashboard-{name}")
        box = page.locator(".table-scroll")
        table_width = page.locator("#dashboard-settings").evaluate("table => table.scrollWidth")
        assert box.evaluate("box => box.getBoundingClientRect().right") <= width, name
        if table_width > box.evaluate("box => box.clientWidth"):
            # Wider than its box: the box scrolls, not the page.
            box.evaluate("box => { box.scrollLeft = box.scrollWidth; }")
            assert box.evaluate("box => box.scrollLeft") > 0, name
            assert page.evaluate("window.scrollX") == 0, name

    # The phone's table is wider than the phone: what the box is there for.
    assert table_width > 390
