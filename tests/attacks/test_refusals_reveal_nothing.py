"""A refusal names only what its caller may see: imports and families among researchers.

Another researcher's private setting does not exist for the caller (attacks/queries.py):
no import or family refusal may name it, nor its file, nor say when it was imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client

from attacks import imports, sharing
from attacks.models import AttackSetting, SharingRole
from tests.attacks.test_imports import good_arrays, write_npz


def _import(
    path: Path, name: str, by: User | None, norm: str = "linf", eps: float = 0.4, family: str = ""
) -> AttackSetting:
    return imports.import_examples(
        path,
        name=name,
        dataset="mnist",
        split="test",
        norm=norm,
        eps=eps,
        family=family,
        created_by=by,
    )


@pytest.fixture
def secret_path(tmp_path: Path) -> Path:
    return write_npz(tmp_path, "secret-file.npz", **good_arrays())


@pytest.fixture
def secret(secret_path: Path, outsider: User) -> AttackSetting:
    """The outsider's private L2 import in family "tramer", unseen by the researcher."""
    return _import(
        secret_path, "outsiders-secret-l2", outsider, norm="l2", eps=3.0, family="tramer"
    )


def test_an_import_into_a_family_ignores_the_sets_its_maker_cannot_see(
    secret: AttackSetting, secret_path: Path, researcher: User
) -> None:
    mine = _import(secret_path, "mine-linf", researcher, family="tramer")

    assert mine.family == "tramer"
    assert mine.config["import_report"]["same_file_as"] == []  # the secret is not named there
    assert secret.family == "tramer"


def test_an_import_into_a_family_is_refused_by_a_visible_set_and_names_it(
    secret: AttackSetting, secret_path: Path, researcher: User, outsider: User
) -> None:
    sharing.share(secret, role=SharingRole.VIEW, by=outsider, username="researcher")

    with pytest.raises(ValidationError, match="family 'tramer' holds outsiders-secret-l2"):
        _import(secret_path, "mine-linf", researcher, family="tramer")

    same_file = _import(secret_path, "mine-unfamilied", researcher)
    assert same_file.config["import_report"]["same_file_as"] == ["outsiders-secret-l2"]


def test_naming_a_family_on_the_page_ignores_the_sets_the_caller_cannot_see(
    secret: AttackSetting, secret_path: Path, researcher: User, researcher_client: Client
) -> None:
    mine = _import(secret_path, "mine-linf", researcher)

    response = researcher_client.post(
        f"/researcher/settings/{mine.pk}/family/", {"family": "tramer"}
    )

    assert response.status_code == 302
    assert "outsiders-secret-l2" not in response.content.decode()
    mine.refresh_from_db()
    assert mine.family == "tramer"


def test_a_taken_name_is_refused_without_the_other_import_s_file_or_date(
    secret: AttackSetting, secret_path: Path, researcher: User
) -> None:
    with pytest.raises(ValidationError) as refused:
        _import(secret_path, "outsiders-secret-l2", researcher)

    message = " ".join(refused.value.messages)
    assert message == "an attack setting named 'outsiders-secret-l2' already exists"
    assert "secret-file.npz" not in message
    assert AttackSetting.objects.count() == 1


def test_the_command_line_sees_every_set(secret: AttackSetting, secret_path: Path) -> None:
    """An operator's import (no owner, public) is checked against every set, as before."""
    with pytest.raises(ValidationError, match="already imported from this file"):
        _import(secret_path, "outsiders-secret-l2", None)
    with pytest.raises(ValidationError, match="family 'tramer' holds outsiders-secret-l2"):
        _import(secret_path, "public-linf", None, family="tramer")
