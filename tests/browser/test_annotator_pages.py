"""The annotator's pages on phones and desktops, in Chromium: every answer in view, no key
badges on touch, no answer left looking chosen, each image fetched once; the consent page's
facts, the end per recruiter, the lab code as copied, the 404 page and the icon."""

from __future__ import annotations

from collections import Counter

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from labeling.models import Label, Participant
from study.models import LabCode, Study
from tests.browser.conftest import ARTIFACTS, screenshot
from tests.browser.test_annotator_flow import start, wait_until_answerable
from tests.labeling.conftest import configure

pytestmark = pytest.mark.django_db(transaction=True)

PORTRAIT = ViewportSize(width=390, height=844)
LANDSCAPE = ViewportSize(width=844, height=390)
SMALL_LANDSCAPE = ViewportSize(width=740, height=360)
FACTS = {
    "public_title": "Looking at small images",
    "expected_minutes": 12,
    "contact": "A. Researcher, Example University, a.researcher@example.org",
}


def screen(page: Page, name: str) -> None:
    """What the phone shows, without scrolling (a full-page shot re-lays the page out)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def phone(browser: Browser, viewport: ViewportSize) -> BrowserContext:
    return browser.new_context(viewport=viewport, has_touch=True, is_mobile=True)


def answers_outside_the_viewport(page: Page) -> list[str]:
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('#label-form .answer'))
            .filter((b) => { const r = b.getBoundingClientRect();
              return r.top < 0 || r.left < 0 || r.bottom > window.innerHeight
                || r.right > window.innerWidth || r.width === 0; })
            .map((b) => b.textContent.trim())"""
    )


def looks(page: Page, value: str) -> dict[str, str]:
    """How the answer button for ``value`` is drawn, and whether it has the focus."""
    return page.evaluate(
        """(value) => { const b = document.querySelector(`#label-form .answer[value="${value}"]`);
            const s = getComputedStyle(b);
            return { background: s.backgroundColor, outline: s.outlineStyle, shadow: s.boxShadow,
                     focused: String(document.activeElement === b) }; }""",
        value,
    )


@pytest.mark.parametrize(
    ("viewport", "name"),
    [
        (PORTRAIT, "annotator-phone-portrait"),
        (LANDSCAPE, "annotator-phone-landscape"),
        (SMALL_LANDSCAPE, "annotator-phone-landscape-small"),
    ],
)
def test_on_a_phone_every_answer_is_in_view_without_key_badges(
    live_server, browser: Browser, make_study, viewport: ViewportSize, name: str
) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    context = phone(browser, viewport)
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{study.join_token}/")
    page.get_by_role("button", name="I agree").tap()
    expect(page.get_by_text("Tap your answer.")).to_be_visible()
    expect(page.get_by_text("Press the key shown on an answer")).to_be_hidden()
    page.get_by_role("button", name="Start").tap()
    page.wait_for_url("**/label/")
    wait_until_answerable(page)

    outside = answers_outside_the_viewport(page)
    badges = page.locator("#label-form kbd").evaluate_all(
        "(all) => all.filter((k) => k.getClientRects().length > 0).length"
    )
    hint_shown = page.locator(".hint").is_visible()
    image = page.locator("#stimulus").bounding_box()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    screen(page, name)
    context.close()

    assert outside == []
    assert badges == 0
    assert not hint_shown
    assert image is not None
    assert image["width"] % 28 == 0
    assert image["width"] >= 28 * 3
    assert image["y"] + image["height"] <= viewport["height"]
    assert overflow <= 0


def test_a_tapped_answer_does_not_stay_highlighted_on_the_next_image(
    live_server, browser: Browser, make_study
) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    context = phone(browser, PORTRAIT)
    page = context.new_page()
    start(page, live_server, study)
    wait_until_answerable(page)
    untouched = looks(page, "4")

    page.locator('#label-form .answer[value="3"]').tap()
    expect(page.locator("#progress-text")).to_have_text("Image 2 of 2")
    wait_until_answerable(page)
    after = looks(page, "3")
    screen(page, "annotator-after-tap")
    context.close()

    assert after == untouched
    assert after["focused"] == "false"
    assert Label.objects.get().value == 3


def test_a_desktop_keeps_the_key_badges_and_hints(live_server, page: Page, make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    start(page, live_server, study)
    wait_until_answerable(page)

    expect(page.locator('#label-form .answer[value="7"] kbd')).to_be_visible()
    expect(page.locator(".hint")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_count(1)
    assert answers_outside_the_viewport(page) == []
    screenshot(page, "annotator-desktop")


@pytest.mark.parametrize("inline", [True, False])
def test_each_image_is_fetched_once(
    live_server, page: Page, make_study, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    if not inline:  # every image from its URL: the first by the page, the rest preloaded
        monkeypatch.setattr("labeling.payloads.INLINE_IMAGE_MAX_BYTES", 0)
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    fetched: Counter[str] = Counter()
    page.on(
        "request",
        lambda request: fetched.update([request.url]) if "/image/" in request.url else None,
    )
    shown: list[str] = []
    start(page, live_server, study)
    for number in range(1, 4):
        expect(page.locator("#progress-text")).to_have_text(f"Image {number} of 3")
        wait_until_answerable(page)
        shown.append(page.locator("input[name=assignment]").input_value())
        page.keyboard.press("1")
    page.wait_for_url("**/done/")

    if inline:
        assert fetched == Counter()  # each came inside the page or its trial's JSON
    else:
        assert sorted(fetched) == sorted(
            f"{live_server.url}/s/{study.join_token}/image/{a}/" for a in shown
        )
        assert set(fetched.values()) == {1}


def test_the_consent_page_gives_the_title_duration_and_contact(
    live_server, page: Page, make_study
) -> None:
    study = configure(make_study(), title="PGD eps 0.3 vs small_cnn", **FACTS)

    page.goto(f"{live_server.url}/s/{study.join_token}/")

    expect(page.locator("#study-title")).to_have_text("Looking at small images")
    expect(page.locator("#expected-duration")).to_have_text("About 12 minutes")
    expect(page.get_by_role("link", name="a.researcher@example.org")).to_be_visible()
    expect(page).to_have_title("Consent · Looking at small images")
    expect(page.get_by_text("PGD")).to_have_count(0)
    screenshot(page, "consent")


def label_to_the_end(page: Page, count: int = 2) -> None:
    for number in range(1, count + 1):
        expect(page.locator("#progress-text")).to_have_text(f"Image {number} of {count}")
        wait_until_answerable(page)
        page.keyboard.press("1")
    page.wait_for_url("**/done/")


def test_an_open_link_ends_with_thanks_and_no_code(live_server, page: Page, make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    start(page, live_server, study)
    label_to_the_end(page)
    page.wait_for_url("**/done/")

    expect(page.locator("#finished")).to_contain_text("you may close this page")
    expect(page.locator("#completion-code")).to_have_count(0)
    screenshot(page, "done-open-link")


def test_mturk_ends_with_the_submit_button_and_nothing_to_copy(
    live_server, page: Page, make_study
) -> None:
    study = configure(
        make_study(count=2, labels_per_item=1, items_per_participant=2), recruitment="mturk"
    )
    page.goto(
        f"{live_server.url}/s/{study.join_token}/?assignmentId=A1&hitId=H1&workerId=W1"
        "&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
    )
    page.get_by_role("button", name="I agree").click()
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/label/")
    label_to_the_end(page)
    page.wait_for_url("**/done/")

    expect(page.locator("#finished")).to_contain_text("nothing to copy")
    expect(page.get_by_role("button", name="Submit the HIT")).to_be_focused()
    screenshot(page, "done-mturk")


def test_a_lab_code_with_a_dash_is_accepted_and_the_end_says_show_the_experimenter(
    live_server, page: Page, make_study
) -> None:
    study = configure(
        make_study(count=2, labels_per_item=1, items_per_participant=2), recruitment="lab"
    )
    LabCode.objects.create(study=study, code="CZ6SGEPK")

    page.goto(f"{live_server.url}/s/{study.join_token}/")
    expect(page.get_by_label("Please type the code you were given")).to_be_focused()
    screenshot(page, "lab-code")
    page.keyboard.type("cz6s-gepk")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Before you start")).to_be_visible()
    page.get_by_role("button", name="I agree").click()
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/label/")
    label_to_the_end(page)
    page.wait_for_url("**/done/")

    expect(page.locator("#finished")).to_contain_text("show them this code")
    expect(page.locator("#completion-code")).to_have_text(study.completion_code)
    screenshot(page, "done-lab")
    assert Participant.objects.get().source == Study.Recruitment.LAB


def test_the_prolific_end_says_where_the_participant_goes(
    live_server, page: Page, make_study, researcher
) -> None:
    study = configure(make_study(), recruitment="prolific", status=Study.Status.DRAFT)
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

    page.goto(f"{live_server.url}/s/preview/{study.pk}/?screen=done")

    expect(page.locator("#finished")).to_contain_text("You are being sent back to Prolific")
    screenshot(page, "done-prolific")


def test_a_mistyped_link_gives_the_friendly_404_and_the_site_has_an_icon(
    live_server, page: Page
) -> None:
    response = page.goto(f"{live_server.url}/s/no-such-study/consnet/")

    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", name="This page does not exist")).to_be_visible()
    expect(page.get_by_role("button", name="Go back")).to_be_visible()
    screenshot(page, "not-found")
    icon = page.request.get(f"{live_server.url}/favicon.ico")
    assert icon.status == 200
    assert icon.headers["content-type"] == "image/vnd.microsoft.icon"
