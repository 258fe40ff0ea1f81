"""Personas of the REST API and a study they stand in different relations to.

The study is a draft of the designer's full design (tests/study/conftest.py), owned by
``researcher``; ``editor`` and ``viewer`` are researchers it is shared with, ``outsider``
a researcher it is not; ``annotator`` a participant of a live study (a session, never an
account); ``account`` a signed-in user who is not a researcher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from attacks.models import AttackSetting
from study import services
from study.design import StudyDesign
from study.models import Study
from study.queries import design_of
from tests.fixtures import PASSWORD, clean_mnist_setting
from tests.labeling.conftest import start_open
from tests.study.conftest import full_design, make_setting, settings_of_a_study

__all__ = ["full_design", "make_setting", "settings_of_a_study"]

PERSONAS = ("owner", "editor", "viewer", "outsider", "account", "annotator", "anonymous")
ROLES = {"editor": "edit", "viewer": "view"}


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def api(researcher: User) -> APIClient:
    """The owner's client, with their token."""
    return token_client(researcher)


@pytest.fixture
def study(researcher: User, full_design) -> Study:
    return services.create_draft_study(owner=researcher, design=full_design)


def clean_setting_named(name: str, owner: User) -> AttackSetting:
    """A clean setting over MNIST test images [9000, 9100), owned by ``owner``."""
    setting = clean_mnist_setting(name, (9000, 9100))
    setting.created_by = owner
    setting.save(update_fields=["created_by"])
    return setting


@pytest.fixture
def clean_setting(researcher: User) -> AttackSetting:
    return clean_setting_named("clean-api", researcher)


def _researcher(name: str) -> User:
    return User.objects.create_user(name, password=PASSWORD, is_staff=True)


@pytest.fixture
def persona(study: Study, researcher: User, outsider: User) -> Callable[[str], Client]:
    """A client for each persona, by name."""

    def client_for(name: str) -> Client:
        if name == "owner":
            return token_client(researcher)
        if name in ("editor", "viewer"):
            user = _researcher(name)
            services.add_collaborator(study, name, ROLES[name], by=researcher)
            return token_client(user)
        if name == "outsider":
            return token_client(outsider)
        if name == "account":
            return token_client(User.objects.create_user("account", password=PASSWORD))
        client = APIClient()
        if name == "annotator":
            live = services.create_draft_study(owner=researcher, design=_copy_of(study))
            services.change_status(live, "live", by=researcher)
            start_open(client, live)
        return client

    return client_for


def _copy_of(study: Study) -> StudyDesign:
    return replace(design_of(study), recruitment="open", lab_code_count=0)
