"""The API's payment files (the owner's, each download recorded) and the design's payment and
exclusion fields."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from study import services
from study.models import PaymentFileDownload, Study
from tests.api.conftest import token_client
from tests.api.test_endpoints import _design
from tests.fixtures import PASSWORD
from tests.study.conftest import other_researcher_study
from tests.study.test_payments import ALICE, BOB, prolific_study, reason

__all__ = ["other_researcher_study", "prolific_study"]


def test_the_owner_downloads_prolifics_files_through_the_api(
    api: APIClient, researcher: User, prolific_study: Study
) -> None:
    base = f"/api/v1/studies/{prolific_study.pk}/payments"

    bonuses = api.get(f"{base}/prolific-bonuses.csv/", HTTP_ACCEPT="application/json")
    approvals = api.get(f"{base}/prolific-approvals.txt/")
    summary = api.get(f"{base}/payments.csv/")

    assert bonuses.status_code == 200
    assert bonuses["Content-Type"] == "text/csv; charset=utf-8"
    assert bonuses.content.decode() == f"{ALICE},0.40\n"
    assert approvals["Content-Type"] == "text/plain; charset=utf-8"
    assert approvals.content.decode() == f"{ALICE}\n"
    summary_line = f"prolific,{BOB},,screened out,0.00,{reason(prolific_study)}"
    assert summary_line in summary.content.decode().splitlines()
    records = PaymentFileDownload.objects.order_by("id").values_list(
        "file", "rows", "downloaded_by"
    )
    assert list(records) == [
        ("prolific-bonuses.csv", 1, researcher.pk),
        ("prolific-approvals.txt", 1, researcher.pk),
        ("payments.csv", 5, researcher.pk),
    ]


@pytest.mark.parametrize("role", ["view", "edit", None])
def test_no_one_but_the_owner_gets_them(
    researcher: User, prolific_study: Study, role: str | None
) -> None:
    other = User.objects.create_user("other", password=PASSWORD, is_staff=True)
    if role:
        services.add_collaborator(prolific_study, "other", role, by=researcher)

    response = token_client(other).get(
        f"/api/v1/studies/{prolific_study.pk}/payments/prolific-bonuses.csv/"
    )

    assert response.status_code == 404
    assert not PaymentFileDownload.objects.exists()


@pytest.mark.parametrize("name", ["mturk-review.csv", "nothing.csv"])
def test_a_file_the_recruiter_does_not_take_is_a_404(
    api: APIClient, prolific_study: Study, name: str
) -> None:
    response = api.get(f"/api/v1/studies/{prolific_study.pk}/payments/{name}/")
    assert response.status_code == 404
    assert not PaymentFileDownload.objects.exists()


def test_a_design_sets_bonuses_and_excluded_studies(
    api: APIClient, settings_of_a_study, make_study
) -> None:
    earlier = make_study()
    body = _design(
        settings_of_a_study,
        recruitment="prolific",
        lab_code_count=0,
        exclude_participants_of=[earlier.pk],
        bonus_per_attention_check="0.25",
        bonus_per_item="0.02",
    )

    response = api.post("/api/v1/studies/", body, format="json")

    assert response.status_code == 201, response.content
    made = Study.objects.get(pk=response.json()["id"])
    assert list(made.exclude_participants_of.all()) == [earlier]
    assert list(earlier.exclude_participants_of.all()) == [made]
    assert (made.bonus_per_attention_check, made.bonus_per_item) == (
        Decimal("0.25"),
        Decimal("0.02"),
    )
    shown = response.json()
    assert shown["exclude_participants_of"] == [earlier.pk]
    assert (shown["bonus_per_attention_check"], shown["bonus_per_item"]) == ("0.25", "0.02")


@pytest.mark.parametrize("recruitment", ["prolific", "open"])
def test_a_design_may_exclude_only_its_authors_studies_and_only_by_recruiter_ids(
    api: APIClient, settings_of_a_study, other_researcher_study: Study, make_study, recruitment
) -> None:
    excluded = other_researcher_study if recruitment == "prolific" else make_study()
    body = _design(
        settings_of_a_study,
        recruitment=recruitment,
        lab_code_count=0,
        exclude_participants_of=[excluded.pk],
    )
    before = Study.objects.count()

    response = api.post("/api/v1/studies/", body, format="json")

    assert response.status_code == 400
    assert "exclude_participants_of" in response.json()
    assert Study.objects.count() == before
