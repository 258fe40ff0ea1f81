"""Annotators in a real browser: recruiters' round trips, keyboard-only labelling, timing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, Route, expect

from labeling.models import Assignment, Label, Participant
from study.models import Study, StudyItem
from tests.browser.conftest import screenshot
from tests.labeling.conftest import add_items, configure

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until_answerable(page: Page) -> None:
    """Until the image is on screen and its clock runs (the answers stop being aria-busy)."""
    page.wait_for_function(
        "() => { const i = document.getElementById('stimulus');"
        " const a = document.querySelector('#label-form .answers');"
        " return !!i && !!a && i.complete && i.naturalWidth > 0"
        " && !i.classList.contains('pending') && !a.hasAttribute('aria-busy'); }"
    )


def press_digit_when_ready(page: Page, key: str) -> None:
    wait_until_answerable(page)
    page.wait_for_timeout(120)  # a human takes a moment
    page.keyboard.press(key)


def agree_and_start_by_keyboard(page: Page, screenshots: bool = False) -> None:
    expect(page.get_by_role("heading", name="Before you start")).to_be_visible()
    expect(page.get_by_role("button", name="I agree")).to_be_focused()
    if screenshots:
        screenshot(page, "01-consent")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Instructions")).to_be_visible()
    expect(page.get_by_role("button", name="Start")).to_be_focused()
    if screenshots:
        screenshot(page, "02-instructions")
    page.keyboard.press("Enter")
    page.wait_for_url("**/label/")


def shown_assignment(page: Page) -> str:
    return page.locator("input[name=assignment]").input_value()


def test_a_prolific_participant_goes_from_consent_to_prolific_by_keyboard(
    live_server, page: Page, make_study
) -> None:
    study = configure(
        make_study(count=3, labels_per_item=1, items_per_participant=3),
        recruitment="prolific",
        consent_text="You agree to label a few images.",
    )
    practice = add_items(study, StudyItem.Kind.PRACTICE, 2)
    page.route(
        "https://app.prolific.com/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<p>Prolific</p>"),
    )
    query = urlencode(
        {"PROLIFIC_PID": "60ffe5c8371090c7041d43f8", "STUDY_ID": "st", "SESSION_ID": "se"}
    )

    page.goto(f"{live_server.url}/s/{study.join_token}/?{query}")
    agree_and_start_by_keyboard(page, screenshots=True)

    expect(page.locator("#progress-text")).to_have_text("Practice image 1 of 2")
    press_digit_when_ready(page, str(practice[0].expected_label))
    expect(page.locator("#feedback-text")).to_contain_text("Correct!")
    expect(page.locator("#feedback-text")).to_have_attribute("role", "status")
    expect(page.locator("#continue")).to_be_focused()
    screenshot(page, "03-practice-feedback")
    page.keyboard.press("Enter")
    expect(page.locator("#progress-text")).to_have_text("Practice image 2 of 2")
    press_digit_when_ready(page, str(((practice[1].expected_label or 0) + 1) % 10))
    expect(page.locator("#feedback-text")).to_contain_text(
        f"Not quite: this one is \u201c{practice[1].expected_label}\u201d"
    )
    expect(page.locator("#feedback-text")).to_contain_text("the study starts now")
    page.keyboard.press("Enter")

    for number in range(1, 4):
        expect(page.locator("#progress-text")).to_have_text(f"Image {number} of 3")
        if number == 1:
            width = page.evaluate(
                "document.getElementById('stimulus').getBoundingClientRect().width"
            )
            assert width % 28 == 0  # a whole-number scale: crisp pixels
            assert width >= 28 * 8
            screenshot(page, "04-label")
        with page.expect_request("**/api/labels"):
            press_digit_when_ready(page, "7" if number < 3 else "n")
    page.wait_for_url("https://app.prolific.com/**")

    assert parse_qs(urlsplit(page.url).query) == {"cc": [study.completion_code]}
    labels = list(Label.objects.filter(item__kind="main").order_by("id"))
    assert [label.value for label in labels] == [7, 7, -1]
    assert all(100 <= (label.client_response_ms or 0) < 10_000 for label in labels)
    assert all(label.server_response_ms >= 0 for label in labels)
    assert Participant.objects.get().completed_at is not None


def test_an_mturk_preview_creates_nobody(live_server, page: Page, make_study) -> None:
    study = configure(make_study(), recruitment="mturk")
    add_items(study, StudyItem.Kind.PRACTICE, 1)

    page.goto(f"{live_server.url}/s/{study.join_token}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE")

    expect(page.get_by_text("accept the HIT")).to_be_visible()
    page.wait_for_function("document.querySelector('img.example').naturalWidth === 28")
    screenshot(page, "05-mturk-preview")
    assert not Participant.objects.exists()


def test_an_mturk_worker_submits_the_hit_to_turk_submit_to(
    live_server, page: Page, make_study
) -> None:
    study = configure(make_study(count=2, items_per_participant=2), recruitment="mturk")
    submitted: list[dict[str, list[str]]] = []

    def fake_mturk(route: Route) -> None:
        submitted.append(parse_qs(route.request.post_data or ""))
        route.fulfill(status=200, content_type="text/html", body="<p>HIT submitted</p>")

    page.route("https://workersandbox.mturk.com/**", fake_mturk)
    query = urlencode(
        {
            "assignmentId": "ASSIGN-9",
            "hitId": "HIT-1",
            "workerId": "A1WORKER2EXAMPLE",
            "turkSubmitTo": "https://workersandbox.mturk.com",
        }
    )
    page.goto(f"{live_server.url}/s/{study.join_token}/?{query}")
    agree_and_start_by_keyboard(page)
    for _ in range(2):
        with page.expect_request("**/api/labels"):
            press_digit_when_ready(page, "3")
    submit = page.get_by_role("button", name="Submit the HIT")
    expect(submit).to_be_focused()
    screenshot(page, "06-mturk-submit")

    with page.expect_navigation(url="https://workersandbox.mturk.com/mturk/externalSubmit"):
        page.keyboard.press("Enter")

    assert submitted == [{"assignmentId": ["ASSIGN-9"], "completion_code": [study.completion_code]}]


def test_a_timed_trial_masks_the_image_and_still_takes_the_answer(
    live_server, page: Page, make_study
) -> None:
    study = configure(
        make_study(count=3, labels_per_item=1, items_per_participant=3),
        presentation=Study.Presentation.TIMED,
        exposure_ms=300,
        response_deadline_ms=1500,
    )
    start(page, live_server, study)

    stimulus, mask = page.locator("#stimulus"), page.locator("#mask")
    expect(mask).to_be_visible(timeout=3000)
    expect(stimulus).to_have_class("pixels masked")
    mask_box, image_box = mask.bounding_box(), stimulus.bounding_box()
    assert mask_box is not None
    assert image_box is not None
    assert mask_box["width"] == image_box["width"]  # the mask covers the image exactly
    screenshot(page, "07-timed-mask")
    with page.expect_request("**/api/labels"):
        page.keyboard.press("4")
    expect(page.locator("#progress-text")).to_have_text("Image 2 of 3")
    first = Label.objects.get()
    assert first.value == 4
    assert 300 <= (first.client_response_ms or 0) < 1500

    # No answer: after the deadline the trial is skipped and its item goes back to the pool.
    expect(page.locator("#progress-text")).to_have_text("Image 3 of 3", timeout=5000)
    missed = Assignment.objects.get(status=Assignment.Status.TIMED_OUT)
    assert StudyItem.objects.get(pk=missed.item_id).assigned_count == 0
    assert Label.objects.count() == 1


def start(page: Page, live_server, study: Study) -> None:
    page.goto(f"{live_server.url}/s/{study.join_token}/")
    page.get_by_role("button", name="I agree").click()
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/label/")


def test_a_reload_mid_study_resumes_the_same_item_and_phase(
    live_server, page: Page, make_study
) -> None:
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    add_items(study, StudyItem.Kind.PRACTICE, 2)
    start(page, live_server, study)
    press_digit_when_ready(page, "1")
    expect(page.locator("#continue")).to_be_focused()
    page.keyboard.press("Enter")  # past the feedback
    expect(page.locator("#progress-text")).to_have_text("Practice image 2 of 2")
    before = shown_assignment(page)

    page.reload()

    expect(page.locator("#progress-text")).to_have_text("Practice image 2 of 2")
    assert shown_assignment(page) == before
    press_digit_when_ready(page, "2")
    expect(page.locator("#continue")).to_be_visible()
    assert Assignment.objects.get(public_id=before).status == Assignment.Status.LABELLED


def test_enter_on_a_focused_link_during_feedback_follows_the_link(
    live_server, page: Page, make_study
) -> None:
    """Enter continues after practice feedback, but not from a link or button that has focus."""
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    add_items(study, StudyItem.Kind.PRACTICE, 2)
    start(page, live_server, study)
    press_digit_when_ready(page, "1")
    expect(page.locator("#continue")).to_be_focused()
    page.evaluate("document.activeElement.blur()")  # focus on nothing: Enter still continues
    page.keyboard.press("Enter")
    expect(page.locator("#progress-text")).to_have_text("Practice image 2 of 2")
    press_digit_when_ready(page, "2")
    expect(page.locator("#continue")).to_be_visible()

    page.locator("#withdraw-link").focus()
    page.keyboard.press("Enter")

    page.wait_for_url(f"**/s/{study.join_token}/withdraw/")
    expect(page.get_by_role("heading", name="Withdraw from this study")).to_be_visible()
    assert Label.objects.count() == 2  # both practice answers; nothing withdrawn yet
    assert Participant.objects.get().withdrawn_at is None


def test_a_double_click_makes_one_label(live_server, page: Page, make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    start(page, live_server, study)
    wait_until_answerable(page)
    page.wait_for_timeout(100)

    page.get_by_role("button", name="4", exact=True).dblclick()

    expect(page.locator("#progress-text")).to_have_text("Image 2 of 2")
    assert Label.objects.count() == 1


def test_the_labelling_page_fits_a_phone(live_server, browser, make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    context = browser.new_context(viewport={"width": 360, "height": 740}, has_touch=True)
    phone = context.new_page()
    start(phone, live_server, study)
    wait_until_answerable(phone)

    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    width = phone.evaluate("document.getElementById('stimulus').getBoundingClientRect().width")
    screenshot(phone, "08-label-phone")
    phone.get_by_role("button", name="None / can't tell").tap()
    expect(phone.locator("#progress-text")).to_have_text("Image 2 of 2")
    context.close()

    assert overflow <= 0
    assert width % 28 == 0
    assert width <= 360
    assert Label.objects.get().value == -1


def test_the_researchers_preview_runs_the_page_and_writes_nothing(
    live_server, page: Page, make_study, researcher
) -> None:
    study = configure(make_study(count=2, items_per_participant=2), status=Study.Status.DRAFT)
    add_items(study, StudyItem.Kind.PRACTICE, 1)
    client = Client()
    client.force_login(researcher)
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )

    page.goto(f"{live_server.url}/s/preview/{study.pk}/?screen=label")
    expect(page.get_by_role("navigation", name="Preview")).to_be_visible()
    press_digit_when_ready(page, "1")
    expect(page.locator("#continue")).to_be_focused()
    expect(page.locator("#feedback-text")).not_to_be_empty()
    screenshot(page, "09-researcher-preview")
    page.keyboard.press("Enter")
    expect(page.locator("#progress-text")).to_have_text("Image 1 of 2")
    press_digit_when_ready(page, "1")
    press_digit_when_ready(page, "1")
    page.wait_for_url(lambda url: url.endswith("?screen=done"))

    assert not Participant.objects.exists()
    assert not Label.objects.exists()
