"""The labelling loop's fixed statements: written once, prepared once per connection.

Why by hand: these statements run on every answer, and under the load benchmark
most of their cost was not the work itself. In the web process, Django's query
compiler took about a third of the CPU building the same few statements again and
again (py-spy: SQLCompiler.as_sql and its callees); in PostgreSQL, planning each one
took longer than running it (EXPLAIN ANALYZE: 0.1-0.8 ms planning against
0.04-0.3 ms execution). So each statement here is built once from the models' own
column lists (a new field is picked up by every SELECT without editing SQL; the two
INSERTs name their columns, and a test checks that they name every one), PREPAREd once on each
database connection and then only EXECUTEd: PostgreSQL plans it a few times and then
keeps a generic plan. Rows become instances the way the ORM makes them
(``Model.from_db`` after each field's database converters, e.g. JSON text to Python),
and joined rows arrive as related instances, as ``select_related`` gives them, so
callers cannot tell the difference.

Prepared statements belong to a connection (a reconnect after a database restart
starts with none: they are prepared again) and survive a rolled-back transaction.

PostgreSQL only: the demo runs on SQLite, one person at a time, so there each
function takes the ORM's portable way to the same result (``_portable()``). The
suite runs both: on PostgreSQL, and the labelling loop on SQLite in
tests/labeling/test_sqlite_loop.py.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connection
from django.db.models import Count, F, Field, Model

from attacks.models import Example
from labeling.models import Assignment, Label, Participant
from labeling.services import tallies
from study.models import ANALYSED_ITEM_KINDS, Study, StudyItem

M = TypeVar("M", bound=Model)
_Converter = Callable[[Any, Any, Any], Any]


def _portable() -> bool:
    return connection.vendor != "postgresql"


class Prepared:
    """One statement with positional parameters ($1, $2, ...), prepared per connection."""

    def __init__(self, name: str, parameters: int, build: Callable[[], str]) -> None:
        self.name = f"advstudy_{name}"
        self._execute = f"EXECUTE {self.name}({', '.join(['%s'] * parameters)})"
        self._build = build  # called on first use: the models' converters need a connection

    @cached_property
    def sql(self) -> str:
        return self._build()

    def fetch(self, *params: Any) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:  # connects first if need be
            raw = connection.connection
            self._prepare_on(raw)
            try:
                cursor.execute(self._execute, params)
            except NotSupportedError:
                # "cached plan must not change result type": a migration changed a column
                # that a prepared statement returns. This request fails; the connection's
                # statements are deallocated and prepared afresh on its next use.
                _STALE.add(raw)
                raise
            return list(cursor.fetchall()) if cursor.description else []

    def _prepare_on(self, raw: Any) -> None:
        prepared = _prepared_names(raw)
        if self.name in prepared:
            return
        # Through the driver's own cursor: preparing is setting up the connection, not a
        # query of the request (Django would count and log it as one, on first use only).
        with connection.wrap_database_errors, raw.cursor() as cursor:
            cursor.execute(f"PREPARE {self.name} AS {self.sql}")
        prepared.add(self.name)


# Names prepared on each driver connection; weak, so a closed connection's entry goes.
# Each thread has its own connection: no two threads share an entry.
_PREPARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_STALE: weakref.WeakSet[Any] = weakref.WeakSet()


def _prepared_names(raw: Any) -> set[str]:
    if raw in _STALE:
        with connection.wrap_database_errors, raw.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        _STALE.discard(raw)
        _PREPARED.pop(raw, None)
    names = _PREPARED.get(raw)
    if names is None:
        names = _PREPARED[raw] = set()
    return names


@dataclass(frozen=True)
class Columns(Generic[M]):
    """How one model's columns appear in a SELECT, and how to load them back."""

    model: type[M]
    alias: str
    only: tuple[str, ...] = ()  # attnames to load; empty: every concrete field

    @cached_property
    def fields(self) -> list[Field[Any, Any]]:
        concrete = self.model._meta.concrete_fields
        return [f for f in concrete if not self.only or f.attname in self.only]

    @cached_property
    def sql(self) -> str:
        return ", ".join(f'{self.alias}."{field.column}"' for field in self.fields)

    @cached_property
    def _converters(self) -> list[list[_Converter]]:
        return [
            connection.ops.get_db_converters(field.get_col(self.alias))
            + field.get_db_converters(connection)
            for field in self.fields
        ]

    def load(self, row: Sequence[Any], start: int = 0) -> M:
        """The instance whose columns start at ``row[start]`` (the rest of it deferred)."""
        values = []
        for offset, (field, converters) in enumerate(
            zip(self.fields, self._converters, strict=True)
        ):
            value = row[start + offset]
            for converter in converters:
                value = converter(value, field, connection)
            values.append(value)
        return self.model.from_db(
            DEFAULT_DB_ALIAS, [field.attname for field in self.fields], values
        )

    def __len__(self) -> int:
        return len(self.fields)


def mark_stored(instance: M) -> M:
    """An instance built in Python for a row a statement here wrote: saved, as if loaded."""
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    return instance


def table(model: type[Model]) -> str:
    return model._meta.db_table


def _kinds_array(kinds: Sequence[StudyItem.Kind]) -> str:
    return "ARRAY[" + ", ".join(f"'{kind.value}'" for kind in kinds) + "]"


# Status and kind values inlined as literals: constants of a statement, not parameters.
_ACTIVE = Assignment.Status.ACTIVE.value
_EXPIRED = Assignment.Status.EXPIRED.value
_ANALYSED = _kinds_array(ANALYSED_ITEM_KINDS)
_NOT_ANALYSED = _kinds_array([kind for kind in StudyItem.Kind if kind not in ANALYSED_ITEM_KINDS])


_participant = Columns(Participant, "participant")
_study = Columns(Study, "study")
_assignment = Columns(Assignment, "assignment")
_item = Columns(StudyItem, "item")
_example_image = Columns(Example, "example", only=("id", "image"))


def _participant_with_study(row: Sequence[Any]) -> Participant:
    participant = _participant.load(row)
    participant.study = _study.load(row, len(_participant))
    return participant


def _participant_sql(where: str) -> Callable[[], str]:
    return lambda: (
        f"SELECT {_participant.sql}, {_study.sql} FROM {table(Participant)} participant "
        f"JOIN {table(Study)} study ON study.id = participant.study_id WHERE {where}"
    )


_PARTICIPANT_IN_STUDY = Prepared(
    "participant_in_study",
    2,
    _participant_sql("participant.public_id = $1 AND study.join_token = $2"),
)
_LOCKED_PARTICIPANT = Prepared(
    # NO KEY: it must not wait on the KEY SHARE locks that inserting their rows takes.
    "locked_participant",
    1,
    _participant_sql("participant.id = $1 FOR NO KEY UPDATE OF participant"),
)


def participant_in_study(public_id: str, join_token: str) -> Participant | None:
    """The participant with this public id in the study with this join token, with it."""
    try:
        uuid.UUID(public_id)
    except ValueError:
        return None  # a session holds only ids that we wrote; anything else is nobody
    if _portable():
        return (
            Participant.objects.select_related("study")
            .filter(public_id=public_id, study__join_token=join_token)
            .first()
        )
    rows = _PARTICIPANT_IN_STUDY.fetch(public_id, join_token)
    return _participant_with_study(rows[0]) if rows else None


def locked_participant(participant_id: int) -> Participant:
    """A fresh copy of the participant and its study, the participant's row locked."""
    if _portable():
        return (
            Participant.objects.select_for_update().select_related("study").get(pk=participant_id)
        )
    rows = _LOCKED_PARTICIPANT.fetch(participant_id)
    if not rows:
        raise Participant.DoesNotExist(f"participant {participant_id}")
    return _participant_with_study(rows[0])


_LOCKED_ASSIGNMENT = Prepared(
    "locked_assignment",
    2,
    lambda: (
        f"SELECT {_assignment.sql}, {_item.sql} FROM {table(Assignment)} assignment "
        f"JOIN {table(StudyItem)} item ON item.id = assignment.item_id "
        "WHERE assignment.public_id = $1 AND assignment.participant_id = $2 "
        "FOR UPDATE OF assignment"
    ),
)


def locked_assignment(participant: Participant, public_id: uuid.UUID) -> Assignment | None:
    """The participant's assignment with this public id, locked, with its item."""
    if _portable():
        found = (
            Assignment.objects.select_for_update()
            .select_related("item")
            .filter(public_id=public_id, participant=participant)
            .first()
        )
        if found is None:
            return None
        assignment = found
    else:
        rows = _LOCKED_ASSIGNMENT.fetch(public_id, participant.pk)
        if not rows:
            return None
        assignment = _assignment.load(rows[0])
        assignment.item = _item.load(rows[0], len(_assignment))
    assignment.participant = participant
    return assignment


_ACTIVE_ASSIGNMENTS = Prepared(
    "active_assignments",
    1,
    lambda: (
        f"SELECT {_assignment.sql}, {_item.sql}, {_example_image.sql} "
        f"FROM {table(Assignment)} assignment "
        f"JOIN {table(StudyItem)} item ON item.id = assignment.item_id "
        f"JOIN {table(Example)} example ON example.id = item.example_id "
        f"WHERE assignment.participant_id = $1 AND assignment.status = '{_ACTIVE}' "
        "ORDER BY assignment.id"
    ),
)


def active_assignments(participant: Participant) -> list[Assignment]:
    """The participant's active assignments in order, each with its item and image name.

    Only the example's id and image are loaded (the trial's reply carries the image
    inline); its other fields load if anything asks for them.
    """
    if _portable():
        return list(
            participant.assignments.filter(status=_ACTIVE)
            .select_related("item__example")
            .order_by("id")
        )
    active = []
    for row in _ACTIVE_ASSIGNMENTS.fetch(participant.pk):
        assignment = _assignment.load(row)
        item = _item.load(row, len(_assignment))
        item.example = _example_image.load(row, len(_assignment) + len(_item))
        assignment.item = item
        assignment.participant = participant
        active.append(assignment)
    return active


_START_HELD = Prepared(
    "start_held",
    3,
    lambda: (
        f"UPDATE {table(Assignment)} SET served_at = $2, lease_expires_at = $3 "
        f"WHERE participant_id = $1 AND status = '{_ACTIVE}'"
    ),
)


def start_held(participant: Participant, served_at: datetime, expires_at: datetime) -> None:
    """Restart the response clock and lease of the participant's active assignments."""
    if _portable():
        participant.assignments.filter(status=_ACTIVE).update(
            served_at=served_at, lease_expires_at=expires_at
        )
        return
    _START_HELD.fetch(participant.pk, served_at, expires_at)


_TRIAL_COUNTS = Prepared(
    "trial_counts",
    1,
    lambda: (
        "SELECT item.kind, item.stratum, assignment.status, count(*) "
        f"FROM {table(Assignment)} assignment "
        f"JOIN {table(StudyItem)} item ON item.id = assignment.item_id "
        f"WHERE assignment.participant_id = $1 AND assignment.status <> '{_EXPIRED}' "
        "GROUP BY item.kind, item.stratum, assignment.status"
    ),
)


def trial_rows(participant: Participant) -> list[tuple[str, int, str, int]]:
    """(kind, stratum, status, trials) of the participant's assignments that did not expire."""
    if _portable():
        rows = list(
            participant.assignments.exclude(status=_EXPIRED)
            .order_by()
            .values_list("item__kind", "item__stratum", "status")
            .annotate(trials=Count("id"))
        )
    else:
        rows = _TRIAL_COUNTS.fetch(participant.pk)
    return [(str(kind), int(stratum), str(status), int(n)) for kind, stratum, status, n in rows]


# Claim: lock the stratum's least-labelled free item that this participant has not
# had, take one of its slots, lease it to the participant and read the example's
# image name, in one round trip. Lock one row only: locking every candidate would
# hide them all from racers. The row is locked and rechecked before the UPDATE, so the
# slot count stays <= k. $1 study, $2 kinds, $3 stratum, $4 k, $5 participant,
# $6 public id, $7 served at, $8 lease expires at.
_taken_item = Columns(StudyItem, "taken")
_CLAIM = Prepared(
    "claim",
    8,
    lambda: (
        f"""
WITH taken AS (
    UPDATE {table(StudyItem)} SET assigned_count = assigned_count + 1
    WHERE id = (
        SELECT candidate.id FROM {table(StudyItem)} candidate
        WHERE candidate.study_id = $1 AND candidate.kind = ANY($2)
          AND candidate.stratum = $3 AND candidate.assigned_count < $4
          AND NOT EXISTS (
              SELECT 1 FROM {table(Assignment)} had
              WHERE had.item_id = candidate.id AND had.participant_id = $5
          )
        ORDER BY candidate.assigned_count, candidate.shuffle_key
        LIMIT 1
        FOR NO KEY UPDATE SKIP LOCKED
    )
    RETURNING *
), leased AS (
    INSERT INTO {table(Assignment)}
        (participant_id, item_id, public_id, status, served_at, lease_expires_at)
    SELECT $5, taken.id, $6::uuid, '{_ACTIVE}', $7::timestamptz, $8::timestamptz FROM taken
    RETURNING id
)
SELECT {_taken_item.sql}, {_example_image.sql}, leased.id
FROM taken CROSS JOIN leased
JOIN {table(Example)} example ON example.id = taken.example_id
"""
    ),
)


@dataclass(frozen=True)
class Claim:
    """A lease to take: a free item of ``stratum`` for ``participant``."""

    study: Study
    kinds: Sequence[str]
    stratum: int
    participant: Participant
    public_id: uuid.UUID
    served_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Claimed:
    item: StudyItem  # with its example's id and image
    assignment_id: int


def claim_free_item(claim: Claim) -> Claimed | None:
    """Take a free slot of the stratum's least-labelled item and lease it; None if none."""
    if _portable():
        return _claim_portably(claim)
    rows = _CLAIM.fetch(
        claim.study.pk,
        list(claim.kinds),
        claim.stratum,
        claim.study.labels_per_item,
        claim.participant.pk,
        claim.public_id,
        claim.served_at,
        claim.expires_at,
    )
    if not rows:
        return None
    item = _taken_item.load(rows[0])
    item.example = _example_image.load(rows[0], len(_taken_item))
    return Claimed(item, rows[0][-1])


def _claim_portably(claim: Claim) -> Claimed | None:
    study, k = claim.study, claim.study.labels_per_item
    # One writer at a time (SQLite): the conditional UPDATE alone keeps the count <= k.
    item = (
        StudyItem.objects.filter(
            study=study, kind__in=claim.kinds, stratum=claim.stratum, assigned_count__lt=k
        )
        .exclude(assignments__participant=claim.participant)
        .order_by("assigned_count", "shuffle_key")
        .select_related("example")
        .first()
    )
    if item is None or not StudyItem.objects.filter(pk=item.pk, assigned_count__lt=k).update(
        assigned_count=F("assigned_count") + 1
    ):
        return None
    item.assigned_count += 1
    return Claimed(item, _lease_portably(claim, item))


# Practice: the first practice item (in the study's shuffled order) that this
# participant has not had, leased to them, in one round trip. Practice items hold no
# slot (every participant sees them), so nothing is counted or locked but the
# participant, whom the caller has locked. $1 study, $2 participant, $3 public id,
# $4 served at, $5 lease expires at.
_LEASE_PRACTICE = Prepared(
    "lease_practice",
    5,
    lambda: (
        f"""
WITH picked AS (
    SELECT item.id FROM {table(StudyItem)} item
    WHERE item.study_id = $1 AND item.kind = '{StudyItem.Kind.PRACTICE.value}'
      AND NOT EXISTS (
          SELECT 1 FROM {table(Assignment)} had
          WHERE had.item_id = item.id AND had.participant_id = $2
      )
    ORDER BY item.shuffle_key, item.id
    LIMIT 1
), leased AS (
    INSERT INTO {table(Assignment)}
        (participant_id, item_id, public_id, status, served_at, lease_expires_at)
    SELECT $2, picked.id, $3::uuid, '{_ACTIVE}', $4::timestamptz, $5::timestamptz FROM picked
    RETURNING id, item_id
)
SELECT {_item.sql}, {_example_image.sql}, leased.id
FROM leased JOIN {table(StudyItem)} item ON item.id = leased.item_id
JOIN {table(Example)} example ON example.id = item.example_id
"""
    ),
)


def lease_practice_item(claim: Claim) -> Claimed | None:
    """Lease the participant's next practice item (``claim.kinds`` and ``stratum`` unused)."""
    if _portable():
        return _lease_practice_portably(claim)
    rows = _LEASE_PRACTICE.fetch(
        claim.study.pk, claim.participant.pk, claim.public_id, claim.served_at, claim.expires_at
    )
    if not rows:
        return None
    item = _item.load(rows[0])
    item.example = _example_image.load(rows[0], len(_item))
    return Claimed(item, rows[0][-1])


def _lease_practice_portably(claim: Claim) -> Claimed | None:
    item = (
        StudyItem.objects.filter(study=claim.study, kind=StudyItem.Kind.PRACTICE)
        .exclude(assignments__participant=claim.participant)
        .select_related("example")
        .order_by("shuffle_key", "id")
        .first()
    )
    if item is None:
        return None
    return Claimed(item, _lease_portably(claim, item))


def _lease_portably(claim: Claim, item: StudyItem) -> int:
    leased = Assignment.objects.create(
        participant=claim.participant,
        item=item,
        public_id=claim.public_id,
        status=_ACTIVE,
        served_at=claim.served_at,
        lease_expires_at=claim.expires_at,
    )
    return int(leased.pk)


# The label, its assignment marked answered, the item's counts and the participant's
# figures, in one round trip. ON CONFLICT on the client key only: a label this
# participant already stored under the same key (two copies of one submission) is
# kept, nothing else changes and the caller returns that label; any other conflict is
# a bug and raises (the ORM's create() would raise on every conflict, aborting the
# caller's transaction). The medians are taken afresh over the participant's labels
# (a hundred or two rows by the label index; the study's few practice and attention
# items left out by id: joining every label to its item cost five times as much);
# the new label is not visible to the statement that inserts it, so it is added.
_STORE_LABEL = Prepared(
    "store_label",
    10,
    lambda: (
        f"""
WITH stored AS (
    INSERT INTO {table(Label)} (assignment_id, participant_id, item_id, value, client_key,
        client_response_ms, server_response_ms, created_at, is_correct, too_fast)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (participant_id, client_key) DO NOTHING
    RETURNING id
), answered AS (
    UPDATE {table(Assignment)} SET status = '{Assignment.Status.LABELLED.value}'
    WHERE id = $1 AND EXISTS (SELECT 1 FROM stored)
), counted AS (
    UPDATE {table(StudyItem)} SET labelled_count = labelled_count + 1,
        votes = jsonb_set(votes, ARRAY[$4::text],
                          to_jsonb(coalesce((votes ->> $4::text)::integer, 0) + 1))
    WHERE id = $3 AND EXISTS (SELECT 1 FROM stored)
    RETURNING study_id, kind = ANY({_ANALYSED}) AS analysed,
        kind = '{StudyItem.Kind.ATTENTION.value}' AS attention
), earlier AS (
    SELECT l.client_response_ms, l.server_response_ms
    FROM {table(Label)} l, counted c
    WHERE l.participant_id = $2 AND l.item_id <> ALL(ARRAY(
        SELECT i.id FROM {table(StudyItem)} i
        WHERE i.study_id = c.study_id AND i.kind = ANY({_NOT_ANALYSED})))
    UNION ALL SELECT $6, $7
), tallied AS (
    UPDATE {table(Participant)} p SET
        analysed_labels = analysed_labels + c.analysed::integer,
        attention_answers = attention_answers + c.attention::integer,
        first_label_at = CASE WHEN c.analysed THEN LEAST(first_label_at, $8)
                              ELSE first_label_at END,
        last_label_at = CASE WHEN c.analysed THEN GREATEST(last_label_at, $8)
                             ELSE last_label_at END,
        median_client_response_ms = CASE WHEN c.analysed THEN (
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY client_response_ms)
            FROM earlier) ELSE median_client_response_ms END,
        median_server_response_ms = CASE WHEN c.analysed THEN (
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY server_response_ms)
            FROM earlier) ELSE median_server_response_ms END
    FROM counted c
    WHERE p.id = $2 AND (c.analysed OR c.attention)
)
SELECT id FROM stored
"""
    ),
)


def insert_label(label: Label) -> int | None:
    """Store a new label and count it; its id, or None if its client key was used."""
    if _portable():
        return _insert_label_portably(label)
    rows = _STORE_LABEL.fetch(
        label.assignment_id,
        label.participant_id,
        label.item_id,
        label.value,
        label.client_key,
        label.client_response_ms,
        label.server_response_ms,
        label.created_at,
        label.is_correct,
        label.too_fast,
    )
    return int(rows[0][0]) if rows else None


def _insert_label_portably(label: Label) -> int | None:
    if Label.objects.filter(participant=label.participant, client_key=label.client_key).exists():
        return None
    label.save(force_insert=True)
    Assignment.objects.filter(pk=label.assignment_id).update(status=Assignment.Status.LABELLED)
    item = StudyItem.objects.get(pk=label.item_id)
    votes = {**item.votes, str(label.value): item.votes.get(str(label.value), 0) + 1}
    StudyItem.objects.filter(pk=item.pk).update(labelled_count=F("labelled_count") + 1, votes=votes)
    if item.kind == StudyItem.Kind.ATTENTION or item.is_analysed:
        figures = tallies.figures_of(label.participant_id)
        Participant.objects.filter(pk=label.participant_id).update(**asdict(figures))
    return int(label.pk)
