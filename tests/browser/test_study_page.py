"""The study page in Chromium: "Go live" asks for its box, the server refuses it unticked
even where the browser's own check is gone, and the page leads to the gallery, which reads
its votes as sentences. Screenshots: study-page, gallery."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from labeling import services
from study.models import Study, StudyItem
from tests.browser.conftest import screenshot
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def labelled_draft(make_study) -> Study:
    """Three items, k = 3: two participants labelled them, agreeing on the items of even id,
    before the study was put back to draft (a state the product never makes: to show a
    draft and votes in one test)."""
    study = make_study(count=3, labels_per_item=3, items_per_participant=3)
    for person in range(2):
        participant = services.join_study(study)
        while (assignment := services.next_assignment(participant)) is not None:
            item = StudyItem.objects.select_related("example").get(pk=assignment.item_id)
            value = (item.example.source_label + person * (item.pk % 2)) % 10
            services.submit_label(participant, assignment.public_id, value, uuid.uuid4(), 900.0)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.DRAFT)
    return study


def test_go_live_asks_for_the_box_and_the_gallery_reads(
    live_server, page: Page, make_study
) -> None:
    study = labelled_draft(make_study)
    page.goto(f"{live_server.url}/researcher/studies/{study.pk}/")
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#study-status")).to_have_text("draft")
    screenshot(page, "study-page")

    go_live = page.get_by_role("button", name="Go live")
    go_live.click()  # the box is unticked: the browser does not send the form
    expect(page.locator("#study-status")).to_have_text("draft")
    box = page.get_by_label("I have checked the design: go live")
    box.evaluate("box => { box.required = false; }")  # as a browser without the check
    go_live.click()
    expect(page.locator(".status-error")).to_contain_text("Nothing changed")
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT

    page.get_by_label("I have checked the design: go live").check()
    page.get_by_role("button", name="Go live").click()
    expect(page.locator("#study-status")).to_have_text("live")
    study.refresh_from_db()
    assert study.status == Study.Status.LIVE

    page.locator("#gallery-link").click()
    expect(page.locator("#gallery .example").first).to_be_visible()
    votes = page.locator("#gallery .votes").all_text_contents()
    assert len(votes) == 3
    assert {text.split(" for ")[0] for text in votes} == {"2 votes", "1 vote"}, votes
    assert "\u00d7" not in page.locator("#gallery").inner_text()
    screenshot(page, "gallery")
