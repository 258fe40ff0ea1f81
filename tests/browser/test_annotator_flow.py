"""An annotator labels a whole study with the keyboard in a real browser."""

import pytest
from playwright.sync_api import Page, expect

from labeling.models import Label
from study.models import StudyItem
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_annotator_labels_everything_with_number_keys(live_server, page: Page, make_study) -> None:
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)

    page.goto(f"{live_server.url}/s/{study.join_token}/")
    screenshot(page, "annotator-join")
    page.get_by_role("button", name="Start").click()
    for number in range(1, 4):
        expect(page.get_by_text(f"Image {number} of 3")).to_be_visible()
        image = page.get_by_alt_text("The image to label")
        expect(image).to_be_visible()
        page.wait_for_function("document.getElementById('stimulus').complete")
        assert page.evaluate("document.getElementById('stimulus').naturalWidth") == 28
        if number == 1:
            screenshot(page, "annotator-label")
        page.wait_for_timeout(150)  # a human takes a moment
        with page.expect_navigation():
            page.keyboard.press("7" if number < 3 else "n")
    expect(page.locator("#completion-code")).to_have_text(study.completion_code)
    screenshot(page, "annotator-done")

    labels = list(Label.objects.order_by("id"))
    assert [label.value for label in labels] == [7, 7, -1]
    assert all(label.client_response_ms and label.client_response_ms >= 100 for label in labels)
    assert all(item.labelled_count == 1 for item in StudyItem.objects.filter(study=study))


def test_a_double_click_makes_one_label(live_server, page: Page, make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    page.goto(f"{live_server.url}/s/{study.join_token}/")
    page.get_by_role("button", name="Start").click()

    page.get_by_role("button", name="4", exact=True).dblclick()
    expect(page.get_by_text("Image 2 of 2")).to_be_visible()

    assert Label.objects.count() == 1
