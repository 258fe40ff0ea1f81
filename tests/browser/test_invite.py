"""Inviting a researcher in Chromium: an admin invites from the navigation, the new
researcher opens the link in their own browser, sets a password and signs in.
Screenshots: invite-form, invite-link, invite-set-password."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import assert_accessible
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "correct-horse-battery-staple-42"


def test_an_admin_invites_a_researcher_who_sets_a_password_and_signs_in(
    live_server, page: Page, browser: Browser, settings
) -> None:
    settings.EMAIL_HOST = ""  # no mail: the admin hands the link on
    User.objects.create_superuser("boss", "boss@example.org", PASSWORD)
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("navigation", name="Researcher").get_by_role(
        "link", name="Invite a researcher"
    ).click()
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Email").fill("grace@example.org")
    screenshot(page, "invite-form")
    assert_accessible(page, "invite-form")
    page.get_by_role("button", name="Invite").click()
    expect(page.locator("#mail-sentence")).to_contain_text("No mail was sent")
    link = page.locator("#set-password-link").input_value()
    screenshot(page, "invite-link")
    assert_accessible(page, "invite-link")

    newcomer = browser.new_context(viewport={"width": 1000, "height": 900}).new_page()
    newcomer.goto(link)
    expect(newcomer.get_by_role("heading", name="Set your password")).to_be_visible()
    assert newcomer.locator("nav").count() == 0
    newcomer.locator("#id_new_password1").fill(NEW_PASSWORD)
    newcomer.locator("#id_new_password2").fill(NEW_PASSWORD)
    screenshot(newcomer, "invite-set-password")
    assert_accessible(newcomer, "invite-set-password")
    newcomer.get_by_role("button", name="Set password").click()
    newcomer.get_by_role("link", name="Sign in").click()
    newcomer.get_by_label("Username").fill("grace")
    newcomer.get_by_label("Password").fill(NEW_PASSWORD)
    newcomer.get_by_role("button", name="Sign in").click()

    expect(newcomer.get_by_role("heading", name="Researcher home")).to_be_visible()
    expect(newcomer.get_by_role("button", name="Sign out grace")).to_be_visible()
    newcomer.context.close()
