"""A timed study in a real browser: the exposure measured from requestAnimationFrame frames.

docs/studies.md, "Timing": the page hides the image at the frame nearest its exposure
and sends the time from the first frame painted with it to the first painted without
it; the server stores it per trial. The next image comes only with the reply that
starts its trial.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, Response, expect

from labeling.models import Assignment, Label
from study.models import Study
from tests.browser.conftest import screenshot
from tests.browser.test_annotator_flow import start, wait_until_answerable
from tests.labeling.conftest import configure

pytestmark = pytest.mark.django_db(transaction=True)


def timed_study(make_study, exposure_ms: int, deadline_ms: int) -> Study:
    return configure(
        make_study(count=3, labels_per_item=1, items_per_participant=3),
        presentation=Study.Presentation.TIMED,
        exposure_ms=exposure_ms,
        response_deadline_ms=deadline_ms,
    )


def frame_interval(page: Page) -> float:
    """The browser's frame interval: the median gap between ten requestAnimationFrame times."""
    return page.evaluate(
        """() => new Promise((resolve) => {
            const times = [];
            const step = (time) => {
                times.push(time);
                if (times.length < 11) { requestAnimationFrame(step); return; }
                const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
                resolve(gaps[5]);
            };
            requestAnimationFrame(step);
        })"""
    )


def test_the_exposure_is_measured_in_frames_stored_and_the_next_image_waits(
    live_server, page: Page, make_study
) -> None:
    study = timed_study(make_study, exposure_ms=300, deadline_ms=4000)
    replies: list[dict] = []

    def keep_reply(response: Response) -> None:
        if response.url.endswith("/api/labels"):
            replies.append(json.loads(response.body()))

    page.on("response", keep_reply)
    start(page, live_server, study)
    frame = frame_interval(page)

    for number in (1, 2):
        expect(page.locator("#progress-text")).to_have_text(f"Image {number} of 3")
        expect(page.locator("#mask")).to_be_visible(timeout=3000)
        if number == 1:
            screenshot(page, "08-timed-exposure-over")
        with page.expect_response("**/api/labels"):
            page.keyboard.press("5")
    expect(page.locator("#progress-text")).to_have_text("Image 3 of 3")

    exposures = list(
        Assignment.objects.filter(status="labelled")
        .order_by("id")
        .values_list("exposure_ms", flat=True)
    )
    assert len(exposures) == 2
    for exposure in exposures:
        assert exposure is not None
        # The image goes at the frame nearest 300 ms: half a frame early at most, and a
        # frame or two late where a frame was dropped.
        assert 300 - frame / 2 - 1 <= exposure <= 300 + 2 * frame + 1, (exposure, frame)
    assert Label.objects.count() == 2
    assert [reply["next"]["next_image"] for reply in replies] == [None, None]
    assert all(reply["next"]["image_data"] for reply in replies)  # the image came with it


def test_an_answer_during_the_exposure_ends_it_at_the_next_frame(
    live_server, page: Page, make_study
) -> None:
    study = timed_study(make_study, exposure_ms=2000, deadline_ms=4000)
    start(page, live_server, study)
    frame = frame_interval(page)

    wait_until_answerable(page)
    page.wait_for_timeout(400)
    expect(page.locator("#mask")).to_be_hidden()  # still shown: the exposure runs
    with page.expect_response("**/api/labels"):
        page.keyboard.press("2")

    answered = Assignment.objects.get(status="labelled")
    assert answered.exposure_ms is not None
    assert 400 - frame <= answered.exposure_ms < 2000 - frame
    label = Label.objects.get()
    # Masked at the frame after the key press: the exposure ends within a frame or two of it.
    assert label.client_response_ms is not None
    assert abs(answered.exposure_ms - label.client_response_ms) <= 2 * frame + 1
