"""The paper table's page in Chromium: reached from the analysis page, both tables shown in
<pre> blocks as the report gives them, and each downloaded as a file."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from analysis.report import study_report
from analysis.report.paper_table import latex_table, markdown_table
from tests.analysis.report_study import build_hand_study
from tests.analysis.test_paper_table import _lines_but_caption, provenance_of
from tests.browser.conftest import screenshot
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_paper_table_page_shows_the_reports_numbers(
    live_server, page: Page, researcher
) -> None:
    hand = build_hand_study(researcher)
    page.goto(f"{live_server.url}/researcher/studies/{hand.study.pk}/analysis/")
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.locator("#paper-table-link").click()

    expect(page.get_by_role("heading", name="Paper table: Hand-worked study")).to_be_visible()
    markdown = page.locator('pre[data-format="markdown"]')
    latex = page.locator('pre[data-format="latex"]')
    expect(markdown).to_be_visible()
    expect(latex).to_be_visible()
    screenshot(page, "paper-table")
    report = study_report(hand.study)  # what the page computes: 1000 replicates, seed 0
    provenance = provenance_of(hand.study)
    assert _lines_but_caption(markdown.inner_text()) == _lines_but_caption(
        markdown_table(report, provenance)
    )
    assert _lines_but_caption(latex.inner_text()) == _lines_but_caption(
        latex_table(report, provenance)
    )
    with page.expect_download() as download:
        page.locator('a[data-download="latex"]').click()
    assert download.value.suggested_filename == f"study-{hand.study.pk}-paper-table.tex"
    saved = download.value.path().read_text(encoding="utf-8")
    assert _lines_but_caption(saved) == _lines_but_caption(latex_table(report, provenance))
