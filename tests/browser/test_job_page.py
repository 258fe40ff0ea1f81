"""In Chromium: a job's page follows its progress without a reload, and a refused form
shows each error once, beside its field."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from attacks.models import GenerationChunk, GenerationJob, JobStatus
from tests.browser.conftest import screenshot
from tests.fixtures import PASSWORD, clean_mnist_setting

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_the_job_page_follows_progress_live(live_server, page: Page, researcher) -> None:
    setting = clean_mnist_setting("clean-live")
    started = timezone.now() - timedelta(seconds=30)
    # A row as a worker leaves it, with no task queued: the suite's worker, if it runs, must
    # not finish the job under the test.
    job = GenerationJob.objects.create(
        setting=setting,
        offset=0,
        count=40,
        chunk_size=10,
        status=JobStatus.RUNNING,
        done=10,
        started_at=started,
    )
    store_chunk(job, 0, started)

    sign_in(page, f"{live_server.url}/researcher/jobs/{job.pk}/")

    detail = page.locator("#live-detail")
    expect(detail).to_have_text("10 of 40 examples, 1 of 4 chunks; about 2 min left")
    expect(page.get_by_role("link", name="See the generated examples")).to_have_attribute(
        "href", f"/researcher/settings/{setting.pk}/#examples"
    )
    # The worker stores two more chunks; the page, left open, says so within its next polls.
    GenerationJob.objects.filter(pk=job.pk).update(done=30)
    store_chunk(job, 10, started)
    store_chunk(job, 20, started)
    expect(detail).to_have_text(
        "30 of 40 examples, 3 of 4 chunks; less than a minute left", timeout=5000
    )
    assert page.locator("#live-progress").evaluate("bar => bar.value") == pytest.approx(0.75)
    screenshot(page, "job-progress")


def store_chunk(job: GenerationJob, first: int, started) -> None:
    GenerationChunk.objects.create(
        job=job,
        first_position=first,
        stored=job.chunk_size,
        worker_host="gpu-1",
        device="cpu",
        started_at=started,
        finished_at=timezone.now(),
    )


def test_a_refused_setting_shows_each_error_beside_its_field(
    live_server, page: Page, researcher
) -> None:
    sign_in(page, f"{live_server.url}/researcher/settings/new/")
    page.get_by_label("Name").fill("typo")
    page.get_by_label("Attack").select_option("pgd_linf")
    page.get_by_label("Config").fill('{"epsilon": 0.3}')
    page.get_by_role("button", name="Create setting").click()

    config = page.get_by_label("Config")
    message = page.locator("#id_config_error")
    expect(message).to_have_text(
        'PGD (L∞) has no option "epsilon" (did you mean "eps"?); its options are eps, '
        "step_size, steps, restarts, random_start, targeted, target_class."
    )
    assert "id_config_error" in (config.get_attribute("aria-describedby") or "").split()
    assert page.get_by_text('has no option "epsilon"').count() == 1
    expect(page.locator("#id_target_model_error")).to_have_text(
        "PGD (L∞) needs a target model: choose one."
    )
    assert page.locator(".errorlist.nonfield").count() == 0
    # Beside its field: the message starts within a line of the box's bottom edge.
    box, under = config.bounding_box(), message.bounding_box()
    assert box is not None
    assert under is not None
    assert 0 <= under["y"] - (box["y"] + box["height"]) < 40
    screenshot(page, "form-error")
