"""The researcher's list pages in Chromium: a researcher signs in and opens each list,
reaching it by the navigation; a signed-out visitor's sign-in page shows no researcher
navigation. Screenshots (and axe's counts, test-artifacts/axe/): list-studies,
list-models, list-settings, list-jobs, list-studies-empty, sign-in."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from attacks.models import ClassifierModel, JobStatus
from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import assert_accessible
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def _sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Researcher home")).to_be_visible()


def test_a_researcher_opens_each_list_from_the_navigation(
    live_server, page: Page, make_study, researcher: User
) -> None:
    study = make_study()
    ClassifierModel.objects.create(
        name="tiny-cnn",
        architecture="small_cnn",
        dataset="mnist",
        training_split="test",
        training_start=0,
        training_stop=2000,
        status=JobStatus.SUCCEEDED,
        clean_accuracy=0.9512,
        robust_accuracy=0.0123,
        created_by=researcher,
    )
    _sign_in(page, live_server.url, "researcher")
    nav = page.get_by_role("navigation", name="Researcher")

    nav.get_by_role("link", name="Studies").click()
    expect(page.get_by_role("heading", name="Studies")).to_be_visible()
    row = page.locator(f'tr[data-study="{study.pk}"]')
    expect(row).to_contain_text("live")
    expect(row).to_contain_text("0 of 8")  # 4 items, 2 labels each
    screenshot(page, "list-studies")
    assert_accessible(page, "list-studies")

    nav.get_by_role("link", name="Models").click()
    expect(page.locator("#model-list")).to_contain_text("tiny-cnn")
    expect(page.locator("#model-list")).to_contain_text("0.9512")
    screenshot(page, "list-models")
    assert_accessible(page, "list-models")

    nav.get_by_role("link", name="Attack settings").click()
    expect(page.locator("#setting-list")).to_contain_text("clean-4-2")
    screenshot(page, "list-settings")
    assert_accessible(page, "list-settings")

    nav.get_by_role("link", name="Jobs").click()
    expect(page.locator("#job-list")).to_contain_text("4 of 4")
    screenshot(page, "list-jobs")
    assert_accessible(page, "list-jobs")

    page.locator("#job-list a", has_text="Job").first.click()
    expect(page).to_have_url(
        f"{live_server.url}/researcher/jobs/{study.items.first().example.job_id}/"
    )


def test_an_empty_list_says_what_to_do_next(live_server, page: Page, researcher: User) -> None:
    _sign_in(page, live_server.url, "researcher")

    page.goto(f"{live_server.url}/researcher/studies/")

    empty = page.locator("#empty-list")
    expect(empty).to_contain_text("No studies yet")
    screenshot(page, "list-studies-empty")
    assert_accessible(page, "list-studies-empty")
    empty.get_by_role("link", name="design a study").click()
    expect(page).to_have_url(f"{live_server.url}/researcher/studies/new/")


def test_the_sign_in_page_shows_a_visitor_no_researcher_navigation(live_server, page: Page) -> None:
    page.goto(f"{live_server.url}/researcher/studies/")

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "sign-in")
    assert_accessible(page, "sign-in")
    assert page.locator("nav").count() == 0
    assert page.locator('a[href^="/researcher/"]').count() == 0
