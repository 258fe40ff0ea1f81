"""The study page as a researcher reads it: changes that cannot be undone ask for a ticked
box (no JavaScript needed), every page names a participant by the exports' pseudonym, the
participants' label counts count what the progress counts, and the result pages are linked.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.test import Client

from labeling import services as labelling
from labeling.models import Participant
from study import services
from study.audit import Action
from study.models import AuditEvent, Study, StudyItem
from study.pseudonyms import pseudonym_of
from study.queries import study_progress
from tests.labeling.conftest import add_items, answer_all

PROLIFIC_ID = "5f0c1e2d3b4a59687766ab01"


@pytest.fixture
def draft(researcher, full_design) -> Study:
    return services.create_draft_study(owner=researcher, design=full_design)


def status_url(study: Study) -> str:
    return f"/researcher/studies/{study.pk}/status/"


def page_of(client: Client, study: Study) -> str:
    return client.get(f"/researcher/studies/{study.pk}/").content.decode()


def status_changes(study: Study) -> int:
    return AuditEvent.objects.filter(study=study, action=Action.STATUS_CHANGE).count()


# Confirmations.


def test_going_live_without_the_box_is_refused_and_changes_nothing(
    researcher_client: Client, draft: Study
) -> None:
    response = researcher_client.post(status_url(draft), {"status": "live"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing changed: tick \u201cI have checked the design: go live\u201d" in page
    assert page.count("design can no longer change") == 1  # beside the box, not again
    draft.refresh_from_db()
    assert draft.status == Study.Status.DRAFT
    assert status_changes(draft) == 0
    assert 'id="study-status">draft<' in page


def test_going_live_with_the_box_ticked(researcher_client: Client, draft: Study) -> None:
    response = researcher_client.post(status_url(draft), {"status": "live", "confirm": "yes"})

    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == Study.Status.LIVE
    assert status_changes(draft) == 1


def test_closing_asks_for_the_box_and_pausing_and_resuming_do_not(
    researcher_client: Client, draft: Study
) -> None:
    researcher_client.post(status_url(draft), {"status": "live", "confirm": "yes"})
    assert researcher_client.post(status_url(draft), {"status": "paused"}).status_code == 302
    assert researcher_client.post(status_url(draft), {"status": "live"}).status_code == 302

    refused = researcher_client.post(status_url(draft), {"status": "closed"})

    assert refused.status_code == 400
    assert "a closed study never reopens" in refused.content.decode()
    draft.refresh_from_db()
    assert draft.status == Study.Status.LIVE
    assert (
        researcher_client.post(status_url(draft), {"status": "closed", "confirm": "on"}).status_code
        == 302
    )
    draft.refresh_from_db()
    assert draft.status == Study.Status.CLOSED


def test_an_impossible_change_keeps_its_own_reason(researcher_client: Client, draft) -> None:
    response = researcher_client.post(status_url(draft), {"status": "closed"})

    assert response.status_code == 409
    assert "A draft study cannot become closed" in response.content.decode()


def test_the_page_puts_a_required_box_in_the_buttons_form_and_no_script(
    researcher_client: Client, draft: Study
) -> None:
    page = page_of(researcher_client, draft)

    form = re.search(r'<form[^>]*data-confirm-for="live"[^>]*>(.*?)</form>', page, re.S)
    assert form is not None
    assert re.search(r'<input type="checkbox" name="confirm" value="yes" required>', form.group(1))
    assert "I have checked the design: go live" in form.group(1)
    assert 'data-status="live">Go live</button>' in form.group(1)
    assert "confirm(" not in page  # no dialog that a page without scripts would skip

    researcher_client.post(status_url(draft), {"status": "live", "confirm": "yes"})
    live = page_of(researcher_client, draft)
    assert 'data-confirm-for="closed"' in live
    assert 'data-confirm-for="paused"' not in live  # pausing is undone by resuming


# Pseudonyms and counts.


@pytest.fixture
def labelled(make_study) -> Study:
    """A live study of four main items and two practice items, k = 2, labelled in full by
    an open-link participant and a Prolific one."""
    study = make_study(count=4, labels_per_item=2, items_per_participant=4)
    add_items(study, StudyItem.Kind.PRACTICE, 2, source_start=8600, name="practice-items")
    answer_all(labelling.join_study(study, consented=True))
    answer_all(labelling.enter_study(study, "prolific", PROLIFIC_ID, {}))
    return study


def participants_csv(client: Client, study: Study) -> dict[str, dict[str, str]]:
    response = client.get(f"/researcher/studies/{study.pk}/exports/participants.csv")
    assert response.status_code == 200
    text = response.getvalue().decode()
    return {row["participant"]: row for row in csv.DictReader(io.StringIO(text))}


def row_of(page: str, participant: Participant) -> str:
    found = re.search(rf'data-participant="{participant.pk}">(.*?)</tr>', page, re.S)
    assert found is not None
    return found.group(1)


def test_the_same_pseudonym_on_the_study_page_participant_page_and_export(
    researcher_client: Client, labelled: Study
) -> None:
    study_page = page_of(researcher_client, labelled)
    exported = participants_csv(researcher_client, labelled)
    participants = list(Participant.objects.filter(study=labelled).order_by("id"))

    assert [participant.source for participant in participants] == ["open", "prolific"]
    for participant in participants:
        name = pseudonym_of(participant.public_id)
        assert re.fullmatch(r"p_[0-9a-f]{16}", name)
        assert f"<code data-pseudonym>{name}</code>" in row_of(study_page, participant)
        own_page = researcher_client.get(
            f"/researcher/studies/{labelled.pk}/participants/{participant.pk}/"
        ).content.decode()
        assert f'<code id="pseudonym">{name}</code>' in own_page
        assert name in exported
    assert Participant.objects.get(source="prolific").external_id_hash[:8] not in study_page


def test_the_label_counts_leave_practice_out_as_progress_does(
    researcher_client: Client, labelled: Study
) -> None:
    page = page_of(researcher_client, labelled)

    counted = []
    for participant in Participant.objects.filter(study=labelled):
        shown = dict(re.findall(r'data-measure="(\w+)">([^<]*)<', row_of(page, participant)))
        assert (shown["counted_labels"], shown["practice_labels"]) == ("4", "2")
        counted.append(int(shown["counted_labels"]))
    assert sum(counted) == study_progress(labelled)["labels"] == 8
    assert "<th>Main and control labels</th><th>Practice labels</th>" in page
    assert "analysed labels: 8 of 8" in page


# Links.


def test_the_study_page_links_its_result_pages_and_the_gallery_links_back(
    researcher_client: Client, labelled: Study
) -> None:
    page = page_of(researcher_client, labelled)
    base = f"/researcher/studies/{labelled.pk}"

    assert f'id="analysis-link" href="{base}/analysis/"' in page
    assert f'id="dashboard-link" href="{base}/dashboard/"' in page
    assert f'id="gallery-link" href="{base}/gallery/"' in page
    gallery = researcher_client.get(f"{base}/gallery/").content.decode()
    assert f'id="study-link" href="{base}/"' in gallery
