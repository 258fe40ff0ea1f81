"""The researcher pages work in Chromium under their Content Security Policy
(config/researcher_headers.py): signing in, the dashboard's inline script and its
charts, with no violation reported."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.analysis.report_study import build_hand_study
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

RECORD_VIOLATIONS = """
window.violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def test_a_researcher_signs_in_and_sees_the_charts(live_server, page: Page, researcher) -> None:
    study = build_hand_study(researcher).study  # labelled: a chart is drawn only with data
    page.add_init_script(RECORD_VIOLATIONS)

    page.goto(f"{live_server.url}/researcher/studies/{study.pk}/dashboard/")
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.locator("#dashboard-settings")).to_be_visible()
    chart = page.locator("#chart-rates img")
    expect(chart).to_be_visible()
    assert chart.evaluate("image => image.complete && image.naturalWidth > 0")
    assert page.evaluate("typeof window.violations") == "object"  # the init script ran
    assert page.evaluate("window.violations") == []
