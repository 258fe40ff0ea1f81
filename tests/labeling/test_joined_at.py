"""A participant joined when they first opened the link, not when they consented; the
exports' ``joined_at`` says so."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pandas as pd
from django.test import Client
from django.utils import timezone

from analysis.exports import ExportRequest, export_bytes
from labeling.models import Participant
from study.models import LabCode, Study
from tests.labeling.conftest import configure
from tests.labeling.test_recruitment import PID, prolific_url

OPENED_KEY = "advstudy_links_opened"  # labeling/access.py's session key


def opened_minutes_ago(client: Client, study: Study, minutes: int) -> datetime:
    """Move the session's note of when the link was opened back in time."""
    session = client.session
    assert study.join_token in session[OPENED_KEY]
    opened = timezone.now() - timedelta(minutes=minutes)
    session[OPENED_KEY] = {study.join_token: opened.isoformat()}
    session.save()
    return opened


def exported_joined_at(study: Study) -> list[pd.Timestamp]:
    data = b"".join(export_bytes(study, ExportRequest("participants", "csv")))
    return list(pd.to_datetime(pd.read_csv(io.BytesIO(data))["joined_at"], utc=True))


def test_an_open_link_participant_joined_when_the_link_was_opened(make_study) -> None:
    study = make_study()
    client = Client()
    assert client.get(f"/s/{study.join_token}/").status_code == 302
    opened = opened_minutes_ago(client, study, 7)

    client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})

    participant = Participant.objects.get()
    assert participant.created_at == opened
    assert participant.consented_at is not None
    assert participant.consented_at - participant.created_at >= timedelta(minutes=7)
    assert exported_joined_at(study) == [pd.Timestamp(opened)]
    assert study.join_token not in client.session[OPENED_KEY]  # the next person's is their own


def test_opening_the_consent_page_directly_counts_as_opening_the_link(make_study) -> None:
    study = make_study()
    client = Client()
    before = timezone.now()

    client.get(f"/s/{study.join_token}/consent/")
    client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})

    participant = Participant.objects.get()
    assert participant.consented_at is not None
    assert before <= participant.created_at <= participant.consented_at


def test_a_lab_participant_joined_when_the_code_page_was_opened(make_study) -> None:
    study = configure(make_study(), recruitment="lab")
    LabCode.objects.create(study=study, code="K7P2Q9XZ")
    client = Client()
    client.get(f"/s/{study.join_token}/")
    opened = opened_minutes_ago(client, study, 3)

    client.post(f"/s/{study.join_token}/", {"code": "K7P2Q9XZ"})

    assert Participant.objects.get().created_at == opened


def test_a_prolific_participant_joined_at_the_link_before_consent(make_study) -> None:
    study = configure(make_study(), recruitment="prolific")
    client = Client()
    client.get(prolific_url(study, pid=PID))
    joined = Participant.objects.get().created_at

    client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})

    participant = Participant.objects.get()
    assert participant.consented_at is not None
    assert participant.created_at == joined < participant.consented_at
    assert exported_joined_at(study) == [pd.Timestamp(joined)]
