"""The labelling loop's statements: what review found them to need."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.db import NotSupportedError, connection
from django.utils import timezone

from labeling import services
from labeling.models import Assignment, Label
from labeling.services import statements
from study.models import Study, StudyItem
from tests.sqlite import postgresql_only


def test_a_client_key_spent_before_an_expired_lease_returns_keeps_no_slot(make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    participant = services.join_study(study)
    trial = services.next_trial(participant)
    assert trial is not None
    assert trial.following is not None
    key = uuid.uuid4()
    first = services.submit_label(participant, trial.current.public_id, 1, key, 900.0)
    Assignment.objects.filter(pk=trial.following.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    services.release_expired_leases(study)

    # The same key again, on the expired assignment: the first answer stands, and the
    # expired item's slot stays free for someone else.
    again = services.submit_label(participant, trial.following.public_id, 2, key, 900.0)

    assert again.pk == first.pk
    assert Label.objects.count() == 1
    following = StudyItem.objects.get(pk=trial.following.item_id)
    assert (following.assigned_count, following.labelled_count) == (0, 0)
    assert services.next_assignment(services.join_study(study)) is not None


@postgresql_only("statements are PREPAREd on PostgreSQL alone")
@pytest.mark.django_db(transaction=True)  # the column change must commit, as a migration's
def test_a_column_type_changed_under_a_prepared_statement_fails_one_call_only(
    make_study,
) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    participant = services.join_study(study)
    public_id, token = str(participant.public_id), study.join_token
    assert statements.participant_in_study(public_id, token) is not None  # prepared now
    length = Study._meta.get_field("title").max_length or 0
    change = "ALTER TABLE study_study ALTER COLUMN title TYPE varchar({})"
    try:
        with connection.cursor() as cursor:  # a migration run beside a live server
            cursor.execute(change.format(length + 1))
        with pytest.raises(NotSupportedError):
            statements.participant_in_study(public_id, token)

        found = statements.participant_in_study(public_id, token)  # prepared afresh
    finally:
        with connection.cursor() as cursor:
            cursor.execute(change.format(length))
    assert found is not None
    assert found.pk == participant.pk


@pytest.mark.parametrize(
    ("statement", "model"),
    [
        (statements._STORE_LABEL, Label),
        (statements._LEASE, Assignment),
        (statements._LEASE_NEXT_PRACTICE, Assignment),
    ],
)
def test_the_inserts_name_every_column_of_their_table(statement, model) -> None:
    """A new field would otherwise be left to the database's default, not Django's."""
    table = model._meta.db_table
    listed = re.search(rf"INSERT INTO {table}\s*\(([^)]*)\)", statement.sql)
    assert listed is not None
    named = {column.strip() for column in listed.group(1).split(",")}
    assert named == {field.column for field in model._meta.concrete_fields} - {"id"}
