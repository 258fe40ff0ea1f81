"""A study with more than ten classes: no digit keys, and a field that narrows the answers."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from labeling.models import Label
from tests.browser.conftest import screenshot
from tests.browser.test_annotator_flow import agree_and_start_by_keyboard, wait_until_answerable
from tests.labeling.conftest import configure

pytestmark = pytest.mark.django_db(transaction=True)

TWELVE_CLASSES = [{"value": v, "text": f"class {v:02d}"} for v in range(12)] + [
    {"value": -1, "text": "None / can't tell"}
]


def test_beyond_ten_classes_the_annotator_types_to_find_the_answer(
    live_server, page: Page, make_study
) -> None:
    study = configure(
        make_study(count=2, labels_per_item=1, items_per_participant=2),
        label_choices=TWELVE_CLASSES,
    )
    page.goto(f"{live_server.url}/s/{study.join_token}/")
    agree_and_start_by_keyboard(page)
    wait_until_answerable(page)

    answers = page.locator("button[name=value]")
    expect(answers).to_have_count(13)
    expect(page.locator(".answers kbd")).to_have_count(0)  # digits cannot reach class 11
    expect(page.locator("#answer-filter")).to_be_focused()
    page.keyboard.type("1")  # class 01, 10, 11: three left, and "can't tell"
    expect(page.locator("button[name=value]:visible")).to_have_count(4)
    page.keyboard.press("Enter")  # more than one left: nothing is chosen
    page.keyboard.type("1")
    expect(page.locator("button[name=value]:visible")).to_have_count(2)
    screenshot(page, "many-classes-filter")
    with page.expect_request("**/api/labels"):
        page.keyboard.press("Enter")
    wait_until_answerable(page)
    expect(page.locator("#answer-filter")).to_have_value("")  # the next image starts afresh
    expect(answers.filter(visible=True)).to_have_count(13)
    page.get_by_role("button", name="class 03").click()
    page.wait_for_url("**/done/")

    assert list(Label.objects.order_by("id").values_list("value", flat=True)) == [11, 3]
