"""The figures counted at every answer: the items' votes and the participants' figures.

The statement that stores a label counts it (labeling.services.statements); the
exports read these counts instead of the labels, so they must equal what the labels
say after anything the labelling loop does: practice, attention checks, re-sent
answers, expired leases taken again, timeouts, exclusion.
"""

from __future__ import annotations

import io
import random
import statistics
import uuid
from datetime import timedelta
from importlib import import_module

import pandas as pd
import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from analysis.exports import ExportRequest, export_bytes
from labeling import services
from labeling.models import Assignment, Label, Participant
from labeling.services.tallies import counted_votes, drift
from study.models import CANT_TELL, Study, StudyItem
from tests.labeling.conftest import add_items, configure, deadline_passes, timed


def test_a_participants_answers_are_counted_as_they_come(make_study) -> None:
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    configure(study, attention_checks_per_participant=1, max_attention_failures=5)
    add_items(study, StudyItem.Kind.PRACTICE, 1)
    add_items(study, StudyItem.Kind.ATTENTION, 1, source_start=7000)
    participant = services.join_study(study)
    main_times = iter([500.0, 900.0, None, 700.0])  # None: a page without JavaScript

    answers: dict[str, list[int]] = {"main": [], "practice": [], "attention": []}
    while (assignment := services.next_assignment(participant)) is not None:
        kind = assignment.item.kind
        value = [3, CANT_TELL, 3][len(answers["main"])] if kind == "main" else 1
        client_ms = next(main_times) if kind == "main" else 100.0
        services.submit_label(participant, assignment.public_id, value, uuid.uuid4(), client_ms)
        answers[kind].append(value)

    participant.refresh_from_db()
    main_labels = Label.objects.filter(participant=participant, item__kind="main").order_by("id")
    assert participant.analysed_labels == 3
    assert participant.attention_answers == 1
    assert participant.median_client_response_ms == 700.0  # of 500, 900 and none
    assert participant.median_server_response_ms == statistics.median(
        main_labels.values_list("server_response_ms", flat=True)
    )
    assert participant.first_label_at == main_labels.first().created_at
    assert participant.last_label_at == main_labels.last().created_at
    votes = sorted(
        StudyItem.objects.filter(study=study, kind="main").values_list("votes", flat=True), key=str
    )
    assert votes == sorted([{"3": 1}, {"-1": 1}, {"3": 1}], key=str)
    practice = StudyItem.objects.get(study=study, kind="practice")
    assert practice.votes == {"1": 1}


def test_counts_equal_the_labels_after_a_busy_study(make_study) -> None:
    study = timed(make_study(count=12, labels_per_item=3, items_per_participant=4))
    configure(study, attention_checks_per_participant=1, max_attention_failures=0)
    add_items(study, StudyItem.Kind.PRACTICE, 2)
    add_items(study, StudyItem.Kind.ATTENTION, 2, source_start=7000)
    choose = random.Random(7)
    _label_until_full(study, choose)

    assert not drift(study)
    assert Participant.objects.filter(study=study, excluded=True).exists()  # some failed
    totals = sum(sum(v.values()) for v in counted_votes(study).values())
    assert totals == Label.objects.filter(item__study=study).count() > 40


def _label_until_full(study: Study, choose: random.Random) -> None:
    for _ in range(50):
        try:
            participant = services.join_study(study)
        except services.StudyNotOpen:
            return  # every slot taken
        _label_busily(participant, choose)
    raise AssertionError("the study never filled up")


def _label_busily(participant: Participant, choose: random.Random) -> None:
    """Answers, some sent twice, some after their lease ran out and was taken again,
    and in a timed study some trials left to time out."""
    while (assignment := services.next_assignment(participant)) is not None:
        if participant.study.presentation == "timed" and choose.random() < 0.15:
            deadline_passes(assignment)
            services.record_timeout(participant, assignment.public_id)
            continue
        if choose.random() < 0.2:
            Assignment.objects.filter(pk=assignment.pk).update(
                lease_expires_at=timezone.now() - timedelta(seconds=1)
            )
            services.release_expired_leases(participant.study)
        key, value = uuid.uuid4(), choose.choice([0, 1, 2, CANT_TELL])
        client_ms = choose.choice([None, *range(200, 3000, 37)])
        try:
            services.submit_label(participant, assignment.public_id, value, key, client_ms)
            if choose.random() < 0.3:  # the same answer again: counted once
                services.submit_label(participant, assignment.public_id, value, key, client_ms)
        except services.LabelRejected:
            return  # excluded, or the expired slot went to someone else


def test_excluding_a_participant_changes_no_kept_count(make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    participant = services.join_study(study)
    while (assignment := services.next_assignment(participant)) is not None:
        services.submit_label(participant, assignment.public_id, 4, uuid.uuid4(), 800.0)
    kept = dict(StudyItem.objects.filter(study=study).values_list("pk", "votes"))
    assert sorted(kept.values(), key=str) == [{"4": 1}, {"4": 1}]

    Participant.objects.filter(pk=participant.pk).update(excluded=True)

    # The items keep every vote; the export takes the excluded participant's off.
    assert dict(StudyItem.objects.filter(study=study).values_list("pk", "votes")) == kept
    examples = b"".join(export_bytes(study, ExportRequest("examples", "csv")))
    frame = pd.read_csv(io.BytesIO(examples))
    assert list(frame["n_labels"]) == [0, 0]
    assert list(frame["votes_4"]) == [0, 0]


@pytest.mark.parametrize("path", ["postgresql", "python"])
def test_the_migration_counts_the_labels_stored_before_it(make_study, path) -> None:
    study = timed(make_study(count=6, labels_per_item=2, items_per_participant=3))
    add_items(study, StudyItem.Kind.ATTENTION, 1, source_start=7000)
    configure(study, attention_checks_per_participant=1, max_attention_failures=5)
    _label_until_full(study, random.Random(3))
    _forget_counts()
    assert drift(study)

    migration = import_module("labeling.migrations.0004_participant_tallies")
    if path == "postgresql":
        with connection.schema_editor() as editor:
            migration.count_stored_labels(apps, editor)
    else:
        migration.count_in_python(apps)

    assert not drift(study)


def test_recount_writes_the_counts_afresh_and_the_command_reports_them(make_study) -> None:
    study = make_study(count=4, labels_per_item=2, items_per_participant=2)
    other = make_study(count=2, labels_per_item=1, items_per_participant=2)
    _label_until_full(study, random.Random(5))
    _label_until_full(other, random.Random(6))
    _forget_counts()
    Participant.objects.filter(study=study).update(analysed_labels=99)

    checked = io.StringIO()
    call_command("recount_tallies", str(study.pk), "--check", stdout=checked)
    assert f"Counts that differ: study {study.pk}: 4 items," in checked.getvalue()
    assert drift(study)  # --check changes nothing

    call_command("recount_tallies", stdout=io.StringIO())

    assert not drift(study)
    assert not drift(other)
    again = io.StringIO()
    call_command("recount_tallies", stdout=again)
    assert "All counts equal the labels (2 studies)." in again.getvalue()
    with pytest.raises(CommandError, match="no study 999999"):
        call_command("recount_tallies", "999999")


def _forget_counts() -> None:
    StudyItem.objects.update(votes={})
    Participant.objects.update(
        analysed_labels=0,
        attention_answers=0,
        first_label_at=None,
        last_label_at=None,
        median_client_response_ms=None,
        median_server_response_ms=None,
    )
