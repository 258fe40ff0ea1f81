"""Sharing a study: viewers read it, editors also run it, only the owner shares it.

The researcher pages and the REST API fetch studies through one function
(``study.queries.study_for``); these tests pin it on the pages, tests/api on the API.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client

from study import services
from study.models import Study, StudyCollaborator
from tests.fixtures import PASSWORD


@pytest.fixture
def draft(researcher: User, full_design) -> Study:
    return services.create_draft_study(owner=researcher, design=full_design)


def _signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _shared(draft: Study, outsider: User, role: str) -> Client:
    services.add_collaborator(draft, outsider.username, role, by=draft.owner)
    return _signed_in(outsider)


# Given a study shared with a viewer: they read every page and change nothing.

READ_PAGES = ["", "analysis/", "dashboard/", "dashboard/progress.json", "gallery/"]


def test_a_viewer_reads_the_study_pages_but_has_no_buttons(draft: Study, outsider: User) -> None:
    viewer = _shared(draft, outsider, "view")

    for page in READ_PAGES:
        assert viewer.get(f"/researcher/studies/{draft.pk}/{page}").status_code == 200, page
    page = viewer.get(f"/researcher/studies/{draft.pk}/").content.decode()
    assert 'data-status="live"' not in page
    assert "Edit the design" not in page
    assert f'action="/researcher/studies/{draft.pk}/collaborators/"' not in page
    assert f"shared by {draft.owner.username}" in viewer.get("/researcher/").content.decode()


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("status/", {"status": "live"}),
        ("lab-codes/", {"count": 3}),
        ("edit/", {}),
        ("collaborators/", {"username": "researcher", "role": "edit"}),
    ],
)
def test_a_viewer_cannot_change_the_study(draft: Study, outsider: User, url, data) -> None:
    viewer = _shared(draft, outsider, "view")

    response = viewer.post(f"/researcher/studies/{draft.pk}/{url}", data)

    assert response.status_code == 404
    draft.refresh_from_db()
    assert (draft.status, draft.lab_codes.count(), draft.collaborators.count()) == ("draft", 25, 1)


def test_an_editor_runs_the_study_but_cannot_share_it(draft: Study, outsider: User) -> None:
    editor = _shared(draft, outsider, "edit")
    third = User.objects.create_user("third", password=PASSWORD, is_staff=True)

    assert (
        editor.post(
            f"/researcher/studies/{draft.pk}/status/", {"status": "live", "confirm": "yes"}
        ).status_code
        == 302
    )
    shared = editor.post(
        f"/researcher/studies/{draft.pk}/collaborators/", {"username": "third", "role": "view"}
    )

    draft.refresh_from_db()
    assert draft.status == "live"
    assert shared.status_code == 404
    assert not StudyCollaborator.objects.filter(user=third).exists()


def test_the_owner_shares_and_unshares_from_the_study_page(
    draft: Study, researcher_client: Client, outsider: User
) -> None:
    added = researcher_client.post(
        f"/researcher/studies/{draft.pk}/collaborators/", {"username": "outsider", "role": "edit"}
    )
    page = researcher_client.get(f"/researcher/studies/{draft.pk}/").content.decode()
    changed = researcher_client.post(
        f"/researcher/studies/{draft.pk}/collaborators/", {"username": "outsider", "role": "view"}
    )
    role = StudyCollaborator.objects.get(study=draft, user=outsider).role
    removed = researcher_client.post(
        f"/researcher/studies/{draft.pk}/collaborators/{outsider.pk}/remove/"
    )

    assert (added.status_code, changed.status_code, removed.status_code) == (302, 302, 302)
    assert 'data-collaborator="outsider"' in page
    assert role == "view"  # one row per (study, user): a second share changes the role
    assert not draft.collaborators.exists()
    assert _signed_in(outsider).get(f"/researcher/studies/{draft.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("username", "message"),
    [("nobody", "No researcher"), ("annotator", "No researcher"), ("researcher", "owner")],
)
def test_sharing_with_a_non_researcher_or_the_owner_is_refused(
    draft: Study, researcher_client: Client, username: str, message: str
) -> None:
    User.objects.create_user("annotator", password=PASSWORD)

    response = researcher_client.post(
        f"/researcher/studies/{draft.pk}/collaborators/", {"username": username, "role": "view"}
    )

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not draft.collaborators.exists()


def test_the_services_refuse_who_may_not(draft: Study, outsider: User) -> None:
    with pytest.raises(PermissionDenied):
        services.change_status(draft, "live", by=outsider)
    services.add_collaborator(draft, "outsider", "view", by=draft.owner)
    with pytest.raises(PermissionDenied):
        services.change_status(draft, "live", by=outsider)
    with pytest.raises(PermissionDenied):
        services.add_collaborator(draft, "outsider", "edit", by=outsider)
    with pytest.raises(ValidationError):
        services.add_collaborator(draft, "outsider", "admin", by=draft.owner)
    draft.refresh_from_db()
    assert draft.status == "draft"
    assert draft.collaborators.get().role == "view"
