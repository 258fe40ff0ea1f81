"""Signing in: the pages of django.contrib.auth, password reset only where mail can be sent,
django-axes' lockout after repeated wrong passwords, and adding researchers.

Password reset mails a link; without a mail server (``EMAIL_HOST`` unset) its pages
answer 404 and the sign-in page offers no link to them, rather than promising a mail
that never leaves. The check is made per request, so the URL patterns never change.

A new researcher is added by ``manage.py add_researcher`` or by an admin's invite page,
both through ``add_researcher``: an active staff account with an unusable password, and
a one-time link to set one (Django's password-reset token, so it expires after
``PASSWORD_RESET_TIMEOUT`` and stops working once a password is set). The link's pages
work with or without mail: whoever adds the researcher hands the link on.
"""

from __future__ import annotations

import math
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import urls as auth_urls
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import User
from django.contrib.auth.tokens import default_token_generator
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.contrib.auth.views import LoginView, PasswordResetConfirmView
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, URLResolver, path, reverse, reverse_lazy
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.views.decorators.http import require_http_methods
from django.views.generic import TemplateView

from config.auth import researcher_required
from config.form_pages import render_form, render_service_error
from labeling.limits import client_address

PASSWORD_RESET_VIEWS = {
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
}


def mail_is_configured() -> bool:
    return bool(settings.EMAIL_HOST)


def only_with_mail(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not mail_is_configured():
            raise Http404("Password reset is off: this site sends no mail (EMAIL_HOST unset).")
        return view(request, *args, **kwargs)

    return answer


class SignInView(LoginView):
    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        return {**context, "password_reset_offered": mail_is_configured()}


def _gated(pattern: URLPattern | URLResolver) -> URLPattern | URLResolver:
    if isinstance(pattern, URLPattern) and pattern.name in PASSWORD_RESET_VIEWS:
        return path(str(pattern.pattern), only_with_mail(pattern.callback), name=pattern.name)
    return pattern


class ResearcherInviteForm(forms.Form):
    """Who to add: the invite page's form, and what ``manage.py add_researcher`` checks too."""

    username = forms.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = forms.EmailField(help_text="The set-password link is mailed here.")

    def clean_username(self) -> str:
        return str(self.cleaned_data["username"]).strip()


@dataclass(frozen=True)
class Invitation:
    user: User
    set_password_path: str  # the one-time link, without scheme and host


def set_password_path(user: User) -> str:
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return reverse("researcher-welcome", kwargs={"uidb64": uidb64, "token": token})


@transaction.atomic
def add_researcher(*, username: str, email: str) -> Invitation:
    """An active researcher (staff) with no usable password, and the link to set one.

    Refuses a username already taken, in any case: "Alice" and "alice" signing in to one
    lab's site are a mistake waiting to happen.
    """
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": _taken(username)})
    user = User(username=username, email=email, is_staff=True, is_active=True)
    user.set_unusable_password()
    try:
        with transaction.atomic():  # two admins adding one name at once: the second is told
            user.save()
    except IntegrityError as error:
        raise ValidationError({"username": _taken(username)}) from error
    return Invitation(user, set_password_path(user))


def _taken(username: str) -> str:
    return f"A user called {username!r} already exists: choose another username."


def mail_invitation(user: User, link: str) -> str:
    """Mail ``link`` to the new researcher; the sentence the page shows about it."""
    if not mail_is_configured():
        return (
            "No mail was sent: this site sends no mail (EMAIL_HOST unset). "
            "Pass the link on yourself."
        )
    body = (
        f"An account on advstudy was made for you, user name {user.username}.\n"
        f"Set your password here (the link works once, for a few days):\n\n{link}\n"
    )
    try:
        send_mail("Your advstudy account", body, None, [user.email])
    except (OSError, smtplib.SMTPException) as error:
        return f"The mail to {user.email} could not be sent ({error}). Pass the link on yourself."
    return f"The link was mailed to {user.email}."


@researcher_required
@permission_required("auth.add_user", raise_exception=True)
@require_http_methods(["GET", "POST"])
def invite_researcher(request: HttpRequest) -> HttpResponse:
    form = ResearcherInviteForm(request.POST or None)
    if request.method == "GET" or not form.is_valid():
        return render_form(request, "registration/invite.html", form)
    try:
        invitation = add_researcher(**form.cleaned_data)
    except ValidationError as error:
        return render_service_error(request, "registration/invite.html", form, error)
    link = request.build_absolute_uri(invitation.set_password_path)
    context = {
        "invited": invitation.user,
        "link": link,
        "mail_sentence": mail_invitation(invitation.user, link),
    }
    return render(request, "registration/invited.html", context)


class SetFirstPasswordView(PasswordResetConfirmView):
    """The invitation's link: a password reset's pages, but open without mail."""

    template_name = "registration/set_first_password.html"
    success_url = reverse_lazy("researcher-welcome-done")


account_urlpatterns = [
    # Before django.contrib.auth's own sign-in pattern, which it shadows.
    path("login/", SignInView.as_view(), name="login"),
    path("invite/", invite_researcher, name="researcher-invite"),
    path("welcome/<uidb64>/<token>/", SetFirstPasswordView.as_view(), name="researcher-welcome"),
    path(
        "welcome/done/",
        TemplateView.as_view(template_name="registration/set_first_password_done.html"),
        name="researcher-welcome-done",
    ),
    *(_gated(pattern) for pattern in auth_urls.urlpatterns),
]


def login_client_address(request: HttpRequest) -> str:
    """The address whose failures django-axes counts: the one the annotators' rate limits
    see, through the same trusted proxies."""
    return client_address("login", request)


def locked_out(
    request: HttpRequest, response: HttpResponse | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """django-axes' answer to a sign-in while locked: 429 and a sentence saying why and
    for how long."""
    minutes = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    context = {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes}
    return render(request, "registration/locked_out.html", context, status=429)
