"""Adding a researcher (config/accounts.py): ``manage.py add_researcher`` and the admin's
invite page make the same account, and its one-time link sets a password that signs in."""

from __future__ import annotations

import re
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db

INVITE = "/accounts/invite/"
NEW_PASSWORD = "correct-horse-battery-staple-42"
LINK = re.compile(r"https?://[^/\s]+(/accounts/welcome/[^/\s]+/[^/\s\"]+/)")


def _add(*arguments: str) -> str:
    out = StringIO()
    call_command("add_researcher", *arguments, stdout=out)
    return out.getvalue()


def _set_password_and_sign_in(path: str, username: str) -> Client:
    """Follow the link as the new researcher would, in a fresh browser, then sign in."""
    client = Client()
    opened = client.get(path, follow=True)
    assert opened.status_code == 200
    assert b"Set your password" in opened.content
    form_url = opened.redirect_chain[-1][0]
    done = client.post(
        form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True
    )
    assert b"Your password is set" in done.content
    signed = client.post("/accounts/login/", {"username": username, "password": NEW_PASSWORD})
    assert signed.status_code == 302
    assert client.get("/researcher/studies/").status_code == 200
    return client


# The command.


def test_the_command_adds_a_researcher_who_sets_a_password_once_and_signs_in() -> None:
    printed = _add("ada", "--email", "ada@example.org", "--base-url", "https://lab.example.org/")

    ada = User.objects.get(username="ada")
    assert ada.is_active
    assert ada.is_staff
    assert not ada.is_superuser
    assert ada.email == "ada@example.org"
    assert not ada.has_usable_password()
    found = LINK.search(printed)
    assert found is not None, printed
    assert printed.count("https://lab.example.org/accounts/welcome/") == 1
    _set_password_and_sign_in(found[1], "ada")
    used_again = Client().get(found[1], follow=True)
    assert b"This link no longer works" in used_again.content


@pytest.mark.parametrize("taken", ["researcher", "RESEARCHER"])
def test_the_command_refuses_a_username_taken(researcher: User, taken: str) -> None:
    with pytest.raises(CommandError, match="already exists: choose another username"):
        _add(taken, "--email", "someone@example.org")

    assert User.objects.count() == 1
    assert researcher.check_password(PASSWORD)  # untouched


@pytest.mark.parametrize(
    ("username", "email", "said"),
    [
        ("ada", "not-an-address", "email: Enter a valid email address."),
        ("no spaces", "a@example.org", "username: Enter a valid username."),
    ],
)
def test_the_command_refuses_bad_input_and_creates_nothing(
    username: str, email: str, said: str
) -> None:
    with pytest.raises(CommandError, match=re.escape(said)):
        _add(username, "--email", email)

    assert not User.objects.exists()


def test_manage_py_exits_non_zero_on_a_duplicate(researcher: User, capsys) -> None:
    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit) as exited:
        ManagementUtility(
            ["manage.py", "add_researcher", "researcher", "--email", "r@example.org"]
        ).execute()

    assert exited.value.code != 0
    assert "A user called 'researcher' already exists" in capsys.readouterr().err


# The invite page.


@pytest.fixture
def admin_client(db: None) -> Client:
    boss = User.objects.create_superuser("boss", "boss@example.org", PASSWORD)
    client = Client()
    client.force_login(boss)
    return client


def test_an_admin_invites_a_researcher_who_follows_the_mailed_link(
    admin_client: Client, settings
) -> None:
    settings.EMAIL_HOST = "smtp.example.org"

    answer = admin_client.post(INVITE, {"username": "grace", "email": "grace@example.org"})

    assert answer.status_code == 200
    page = answer.content.decode()
    shown = LINK.search(page)
    assert shown is not None
    assert "The link was mailed to grace@example.org." in page
    assert [message.to for message in mail.outbox] == [["grace@example.org"]]
    mailed = LINK.search(str(mail.outbox[0].body))
    assert mailed is not None
    assert mailed[1] == shown[1]
    grace = User.objects.get(username="grace")
    assert grace.is_staff
    assert not grace.has_usable_password()
    _set_password_and_sign_in(shown[1], "grace")


def test_without_mail_the_page_shows_the_link_and_says_none_was_sent(
    admin_client: Client, settings
) -> None:
    settings.EMAIL_HOST = ""

    answer = admin_client.post(INVITE, {"username": "grace", "email": "grace@example.org"})

    assert answer.status_code == 200
    assert LINK.search(answer.content.decode()) is not None
    assert b"No mail was sent" in answer.content
    assert len(mail.outbox) == 0


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ({"username": "", "email": "a@example.org"}, "This field is required."),
        ({"username": "grace", "email": "nope"}, "Enter a valid email address."),
        ({"username": "bad name!", "email": "a@example.org"}, "Enter a valid username."),
        ({"username": "Boss", "email": "a@example.org"}, "already exists: choose another"),
    ],
)
def test_bad_input_is_refused_with_a_sentence_and_nothing_is_created(
    admin_client: Client, data: dict[str, str], said: str
) -> None:
    answer = admin_client.post(INVITE, data)

    assert answer.status_code == 400
    assert said in answer.content.decode()
    assert User.objects.count() == 1  # the admin alone
    assert len(mail.outbox) == 0


def test_only_those_who_may_add_users_open_the_invite_page(researcher: User) -> None:
    annotator = User.objects.create_user("annotator", password=PASSWORD)
    plain, staff = Client(), Client()
    plain.force_login(annotator)
    staff.force_login(researcher)

    assert Client().get(INVITE).status_code == 302  # to the sign-in page
    assert plain.get(INVITE).status_code == 403
    assert staff.get(INVITE).status_code == 403
    assert staff.post(INVITE, {"username": "x", "email": "x@example.org"}).status_code == 403
    assert not User.objects.filter(username="x").exists()

    researcher.user_permissions.add(Permission.objects.get(codename="add_user"))
    assert staff.get(INVITE).status_code == 200


def test_a_mangled_link_sets_no_password(researcher: User) -> None:
    printed = _add("ada", "--email", "ada@example.org")
    found = LINK.search(printed)
    assert found is not None
    mangled = found[1].rstrip("/")[:-3] + "xyz/"

    page = Client().get(mangled, follow=True)

    assert b"This link no longer works" in page.content
    assert not User.objects.get(username="ada").has_usable_password()


def test_the_welcome_pages_work_without_mail(settings) -> None:
    settings.EMAIL_HOST = ""
    found = LINK.search(_add("ada", "--email", "ada@example.org"))
    assert found is not None

    _set_password_and_sign_in(found[1], "ada")

    assert urlsplit(found[1]).path.startswith("/accounts/welcome/")
