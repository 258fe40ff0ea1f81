"""The labelling loop's fixed statements: one SQL text each, for PostgreSQL and SQLite.

Why by hand: these statements run on every answer. Under the load benchmark, Django's
query compiler took about a third of the web process's CPU building the same few
statements again and again, and PostgreSQL took longer planning each one than running
it. So each statement is written once from the models' own column lists (a new field
is picked up by every SELECT; the INSERTs name their columns, and a test checks that
they name every one), and rows become instances the way the ORM makes them
(``Model.from_db`` after each field's database converters), joined rows as related
instances, as ``select_related`` gives them.

What differs between the two databases is switched in ``Dialect`` alone: PostgreSQL
locks rows (``FOR NO KEY UPDATE``, ``SKIP LOCKED``) where SQLite has one writer at a
time; PostgreSQL PREPAREs each statement once per connection and then EXECUTEs it,
SQLite runs it plainly (its driver keeps compiled statements per connection); the
parameters are written $1, $2, ... as PREPARE takes them, and become the driver's
positional ones on SQLite. SQLite has no data-modifying CTE, so a step that writes two
tables is two statements, run in one transaction on both.

Prepared statements belong to a connection (a reconnect after a database restart
starts with none: they are prepared again) and survive a rolled-back transaction.
"""

from __future__ import annotations

import re
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connection, transaction
from django.db.models import Field, Model

from attacks.models import Example
from labeling.models import Assignment, Label, Participant
from study.models import ANALYSED_ITEM_KINDS, Study, StudyItem

M = TypeVar("M", bound=Model)
_Converter = Callable[[Any, Any, Any], Any]
_PARAMETER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Dialect:
    """Everything in these statements that PostgreSQL and SQLite write differently."""

    prepares: bool  # PREPARE once per connection, then EXECUTE
    locks_rows: bool  # SQLite locks the database: its transactions begin IMMEDIATE (settings)

    def lock(self, clause: str) -> str:
        return clause if self.locks_rows else ""


_DIALECTS = {
    "postgresql": Dialect(prepares=True, locks_rows=True),
    "sqlite": Dialect(prepares=False, locks_rows=False),
}


def dialect() -> Dialect:
    return _DIALECTS[connection.vendor]


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return field


class Statement:
    """One SQL text with parameters $1, $2, ..., each converted as the model field it fills."""

    def __init__(
        self, name: str, build: Callable[[Dialect], str], parameters: Sequence[Field[Any, Any]]
    ) -> None:
        self.name = f"advstudy_{name}"
        self._build = build  # called on first use, when the connection's vendor is known
        self._parameters = parameters

    @cached_property
    def sql(self) -> str:
        return self._build(dialect())

    @cached_property
    def _positional(self) -> tuple[str, list[int]]:
        """The text with the driver's placeholders, and which parameter fills each."""
        order = [int(number) - 1 for number in _PARAMETER.findall(self.sql)]
        return _PARAMETER.sub("%s", self.sql), order

    def fetch(self, *values: Any) -> list[tuple[Any, ...]]:
        params = [
            field.get_db_prep_value(value, connection)
            for field, value in zip(self._parameters, values, strict=True)
        ]
        with connection.cursor() as cursor:  # connects first if need be
            if dialect().prepares:
                self._execute_prepared(cursor, params)
            else:
                sql, order = self._positional
                cursor.execute(sql, [params[index] for index in order])
            return list(cursor.fetchall()) if cursor.description else []

    def _execute_prepared(self, cursor: Any, params: list[Any]) -> None:
        raw = connection.connection
        self._prepare_on(raw)
        try:
            cursor.execute(f"EXECUTE {self.name}({', '.join(['%s'] * len(params))})", params)
        except NotSupportedError:
            # "cached plan must not change result type": a migration changed a column
            # that a prepared statement returns. This request fails; the connection's
            # statements are deallocated and prepared afresh on its next use.
            _STALE.add(raw)
            raise

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
    def _converters(self) -> list[tuple[list[_Converter], Any]]:
        """Each column's converters, and the expression they take (as the ORM's compiler)."""
        converters = []
        for field in self.fields:
            column = field.get_col(self.alias)
            backend = connection.ops.get_db_converters(column)
            converters.append((backend + field.get_db_converters(connection), column))
        return converters

    def load(self, row: Sequence[Any], start: int = 0) -> M:
        """The instance whose columns start at ``row[start]`` (the rest of it deferred)."""
        values = []
        for offset, (converters, column) in enumerate(self._converters):
            value = row[start + offset]
            for converter in converters:
                value = converter(value, column, connection)
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


# Status and kind values inlined as literals: constants of a statement, not parameters.
_ACTIVE = Assignment.Status.ACTIVE.value
_EXPIRED = Assignment.Status.EXPIRED.value
_COUNTED = "(" + ", ".join(f"'{kind.value}'" for kind in ANALYSED_ITEM_KINDS) + ")"
_FINISHED = f"('{Assignment.Status.LABELLED.value}', '{Assignment.Status.TIMED_OUT.value}')"

_participant = Columns(Participant, "participant")
_study = Columns(Study, "study")
_assignment = Columns(Assignment, "assignment")
_item = Columns(StudyItem, "item")
# RETURNING names the updated table's columns by the table's own name (SQLite: no alias).
_updated_item = Columns(StudyItem, table(StudyItem))
_example_image = Columns(Example, "example", only=("id", "image"))


def _participant_with_study(row: Sequence[Any]) -> Participant:
    participant = _participant.load(row)
    participant.study = _study.load(row, len(_participant))
    return participant


def _participant_sql(where: str, lock: str = "") -> Callable[[Dialect], str]:
    return lambda d: (
        f"SELECT {_participant.sql}, {_study.sql} FROM {table(Participant)} participant "
        f"JOIN {table(Study)} study ON study.id = participant.study_id WHERE {where} "
        f"{d.lock(lock)}"
    )


_PARTICIPANT_IN_STUDY = Statement(
    "participant_in_study",
    _participant_sql("participant.public_id = $1 AND study.join_token = $2"),
    [_field(Participant, "public_id"), _field(Study, "join_token")],
)
_LOCKED_PARTICIPANT = Statement(
    "locked_participant",
    # NO KEY: it must not wait on the KEY SHARE locks that inserting their rows takes.
    _participant_sql("participant.id = $1", "FOR NO KEY UPDATE OF participant"),
    [_field(Participant, "id")],
)


_STUDY_BY_JOIN_TOKEN = Statement(
    "study_by_join_token",
    lambda d: f"SELECT {_study.sql} FROM {table(Study)} study WHERE study.join_token = $1",
    [_field(Study, "join_token")],
)


def study_by_join_token(join_token: str) -> Study | None:
    """The study of an annotator's link: every annotator page reads it first."""
    rows = _STUDY_BY_JOIN_TOKEN.fetch(join_token)
    return _study.load(rows[0]) if rows else None


# Whether a counted item still has a free slot: asked on every arrival before anyone is
# admitted. Ordered by the slot count so that the plan walks the (study, assigned_count)
# index and stops at the first free item: without the order, PostgreSQL's LIMIT 1 plan
# was a sequential scan through every earlier study's items.
_FREE_SLOT = Statement(
    "free_slot",
    lambda d: (
        f"SELECT 1 FROM {table(StudyItem)} item WHERE item.study_id = $1 "
        f"AND item.kind IN {_COUNTED} AND item.assigned_count < $2 "
        "ORDER BY item.assigned_count LIMIT 1"
    ),
    [_field(StudyItem, "study"), _field(StudyItem, "assigned_count")],
)


def has_free_slot(study: Study) -> bool:
    """Whether any main or control item of ``study`` has fewer than k slots taken."""
    return bool(_FREE_SLOT.fetch(study.pk, study.labels_per_item))


def participant_in_study(public_id: str, join_token: str) -> Participant | None:
    """The participant with this public id in the study with this join token, with it."""
    try:
        uuid.UUID(public_id)
    except ValueError:
        return None  # a session holds only ids that we wrote; anything else is nobody
    rows = _PARTICIPANT_IN_STUDY.fetch(public_id, join_token)
    return _participant_with_study(rows[0]) if rows else None


def locked_participant(participant_id: int) -> Participant:
    """A fresh copy of the participant and its study, the participant's row locked."""
    rows = _LOCKED_PARTICIPANT.fetch(participant_id)
    if not rows:
        raise Participant.DoesNotExist(f"participant {participant_id}")
    return _participant_with_study(rows[0])


_LOCKED_ASSIGNMENT = Statement(
    "locked_assignment",
    lambda d: (
        f"SELECT {_assignment.sql}, {_item.sql}, study.status FROM {table(Assignment)} assignment "
        f"JOIN {table(StudyItem)} item ON item.id = assignment.item_id "
        f"JOIN {table(Study)} study ON study.id = item.study_id "
        "WHERE assignment.public_id = $1 AND assignment.participant_id = $2 "
        f"{d.lock('FOR UPDATE OF assignment')}"
    ),
    [_field(Assignment, "public_id"), _field(Assignment, "participant")],
)


def locked_assignment(participant: Participant, public_id: uuid.UUID) -> Assignment | None:
    """The participant's assignment with this public id, locked, with its item.

    Also reads the study's status again, into ``participant.study``: the participant's
    own statement may have waited for its lock while the study closed.
    """
    rows = _LOCKED_ASSIGNMENT.fetch(public_id, participant.pk)
    if not rows:
        return None
    assignment = _assignment.load(rows[0])
    assignment.item = _item.load(rows[0], len(_assignment))
    assignment.participant = participant
    participant.study.status = rows[0][-1]
    return assignment


_ACTIVE_ASSIGNMENTS = Statement(
    "active_assignments",
    lambda d: (
        f"SELECT {_assignment.sql}, {_item.sql}, {_example_image.sql} "
        f"FROM {table(Assignment)} assignment "
        f"JOIN {table(StudyItem)} item ON item.id = assignment.item_id "
        f"JOIN {table(Example)} example ON example.id = item.example_id "
        f"WHERE assignment.participant_id = $1 AND assignment.status = '{_ACTIVE}' "
        "ORDER BY assignment.id"
    ),
    [_field(Assignment, "participant")],
)


def active_assignments(participant: Participant) -> list[Assignment]:
    """The participant's active assignments in order, each with its item and image name.

    Only the example's id and image are loaded (the trial's reply carries the image
    inline); its other fields load if anything asks for them.
    """
    return [
        _active_assignment(row, participant) for row in _ACTIVE_ASSIGNMENTS.fetch(participant.pk)
    ]


def _active_assignment(row: Sequence[Any], participant: Participant) -> Assignment:
    assignment = _assignment.load(row)
    item = _item.load(row, len(_assignment))
    item.example = _example_image.load(row, len(_assignment) + len(_item))
    assignment.item = item
    assignment.participant = participant
    return assignment


_START_HELD = Statement(
    "start_held",
    lambda d: (
        f"UPDATE {table(Assignment)} SET served_at = $2, lease_expires_at = $3 "
        f"WHERE participant_id = $1 AND status = '{_ACTIVE}'"
    ),
    [
        _field(Assignment, "participant"),
        _field(Assignment, "served_at"),
        _field(Assignment, "lease_expires_at"),
    ],
)


def start_held(participant: Participant, served_at: datetime, expires_at: datetime) -> None:
    """Restart the response clock and lease of the participant's active assignments."""
    _START_HELD.fetch(participant.pk, served_at, expires_at)


# The participant's active assignments (as ``active_assignments``) and, in the same
# reply, the trials they hold or finished per (kind, stratum, status): every trial
# request needs both, and asking for them apart cost a round trip. A count row has
# NULL for every assignment column.
_TRIAL_STATE = Statement(
    "trial_state",
    lambda d: (
        f"SELECT {_assignment.sql}, {_item.sql}, {_example_image.sql}, NULL, NULL, NULL, NULL "
        f"FROM {table(Assignment)} assignment "
        f"JOIN {table(StudyItem)} item ON item.id = assignment.item_id "
        f"JOIN {table(Example)} example ON example.id = item.example_id "
        f"WHERE assignment.participant_id = $1 AND assignment.status = '{_ACTIVE}' "
        "UNION ALL "
        f"SELECT {', '.join(['NULL'] * (len(_assignment) + len(_item) + len(_example_image)))}, "
        "item.kind, item.stratum, assignment.status, count(*) "
        f"FROM {table(Assignment)} assignment "
        f"JOIN {table(StudyItem)} item ON item.id = assignment.item_id "
        f"WHERE assignment.participant_id = $1 AND assignment.status <> '{_EXPIRED}' "
        "GROUP BY item.kind, item.stratum, assignment.status"
    ),
    [_field(Assignment, "participant")],
)

TrialRow = tuple[str, int, str, int]  # (kind, stratum, status, trials)


def trial_state(participant: Participant) -> tuple[list[Assignment], list[TrialRow]]:
    """The participant's active assignments in order (as ``active_assignments``), and
    (kind, stratum, status, trials) of their assignments that did not expire."""
    active, counts = [], []
    for row in _TRIAL_STATE.fetch(participant.pk):
        if row[0] is None:  # no assignment id: a count row
            kind, stratum, status, trials = row[-4:]
            counts.append((str(kind), int(stratum), str(status), int(trials)))
        else:
            active.append(_active_assignment(row, participant))
    active.sort(key=lambda assignment: assignment.pk)
    return active, counts


# Take a slot of the stratum's least-labelled free counted item that this participant
# has not had, and read the example's image name. Lock one row only: locking every
# candidate would hide them all from racers. The row is locked and rechecked before
# the UPDATE, so the slot count stays <= k (on SQLite the one writer keeps it).
# $1 study, $2 stratum, $3 k, $4 participant.
_TAKE_SLOT = Statement(
    "take_slot",
    lambda d: (
        f"""
UPDATE {table(StudyItem)} SET assigned_count = assigned_count + 1
WHERE id = (
    SELECT candidate.id FROM {table(StudyItem)} candidate
    WHERE candidate.study_id = $1 AND candidate.kind IN {_COUNTED}
      AND candidate.stratum = $2 AND candidate.assigned_count < $3
      AND NOT EXISTS (
          SELECT 1 FROM {table(Assignment)} had
          WHERE had.item_id = candidate.id AND had.participant_id = $4
      )
    ORDER BY candidate.assigned_count, candidate.shuffle_key
    LIMIT 1 {d.lock("FOR NO KEY UPDATE SKIP LOCKED")}
)
RETURNING {_updated_item.sql}, (
    SELECT example.image FROM {table(Example)} example
    WHERE example.id = {table(StudyItem)}.example_id
)
"""
    ),
    [
        _field(StudyItem, "study"),
        _field(StudyItem, "stratum"),
        _field(StudyItem, "assigned_count"),
        _field(Assignment, "participant"),
    ],
)

# Lease the first practice item (in the study's shuffled order) that this participant
# has not had, in one statement: the item's columns come from the caller's per-process
# copy of the study's practice items (``practice_items``), which never change once the
# study is live. Practice items hold no slot (every participant sees them), so nothing is
# counted or locked but the participant, whom the caller has locked.
# $1 study, $2 participant, $3 public id, $4 served at, $5 lease expires at.
_LEASE_NEXT_PRACTICE = Statement(
    "lease_next_practice",
    lambda d: (
        f"""
INSERT INTO {table(Assignment)} (participant_id, item_id, public_id, status, served_at,
    lease_expires_at, image_sent_at, answered_at, exposure_ms)
SELECT $2, item.id, $3, '{_ACTIVE}', $4, $5, NULL, NULL, NULL FROM {table(StudyItem)} item
WHERE item.study_id = $1 AND item.kind = '{StudyItem.Kind.PRACTICE.value}'
  AND NOT EXISTS (
      SELECT 1 FROM {table(Assignment)} had
      WHERE had.item_id = item.id AND had.participant_id = $2
  )
ORDER BY item.shuffle_key, item.id
LIMIT 1
RETURNING id, item_id
"""
    ),
    [
        _field(StudyItem, "study"),
        _field(Assignment, "participant"),
        _field(Assignment, "public_id"),
        _field(Assignment, "served_at"),
        _field(Assignment, "lease_expires_at"),
    ],
)
_PRACTICE_ITEMS = Statement(
    "practice_items",
    lambda d: (
        f"SELECT {_item.sql}, {_example_image.sql} FROM {table(StudyItem)} item "
        f"JOIN {table(Example)} example ON example.id = item.example_id "
        f"WHERE item.study_id = $1 AND item.kind = '{StudyItem.Kind.PRACTICE.value}'"
    ),
    [_field(StudyItem, "study")],
)


def practice_items(study: Study) -> dict[int, StudyItem]:
    """The study's practice items by id, each with its example's id and image."""
    items = {}
    for row in _PRACTICE_ITEMS.fetch(study.pk):
        item = _item.load(row)
        item.example = _example_image.load(row, len(_item))
        items[item.pk] = item
    return items


# How many practice items this participant has not answered (nor timed out) yet: asked
# after each practice answer, to note when the practice is over.
_REMAINING_PRACTICE = Statement(
    "remaining_practice",
    lambda d: (
        f"""
SELECT count(*) FROM {table(StudyItem)} item
WHERE item.study_id = $1 AND item.kind = '{StudyItem.Kind.PRACTICE.value}'
  AND NOT EXISTS (
      SELECT 1 FROM {table(Assignment)} had
      WHERE had.item_id = item.id AND had.participant_id = $2 AND had.status IN {_FINISHED}
  )
"""
    ),
    [_field(StudyItem, "study"), _field(Assignment, "participant")],
)


def remaining_practice(participant: Participant) -> int:
    """The participant's practice items not yet answered or timed out."""
    return int(_REMAINING_PRACTICE.fetch(participant.study_id, participant.pk)[0][0])


_LEASE = Statement(
    "lease",
    lambda d: (
        f"INSERT INTO {table(Assignment)} "
        "(participant_id, item_id, public_id, status, served_at, lease_expires_at, "
        "image_sent_at, answered_at, exposure_ms) "
        f"VALUES ($1, $2, $3, '{_ACTIVE}', $4, $5, NULL, NULL, NULL) RETURNING id"
    ),
    [
        _field(Assignment, "participant"),
        _field(Assignment, "item"),
        _field(Assignment, "public_id"),
        _field(Assignment, "served_at"),
        _field(Assignment, "lease_expires_at"),
    ],
)


@dataclass(frozen=True)
class Claim:
    """A lease to take: a free item of ``stratum`` for ``participant``."""

    study: Study
    stratum: int
    participant: Participant
    public_id: uuid.UUID
    served_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Claimed:
    item: StudyItem  # with its example's id and image
    assignment_id: int


@transaction.atomic(savepoint=False)
def claim_free_item(claim: Claim) -> Claimed | None:
    """Take a free slot of the stratum's least-labelled item and lease it; None if none."""
    rows = _TAKE_SLOT.fetch(
        claim.study.pk, claim.stratum, claim.study.labels_per_item, claim.participant.pk
    )
    if not rows:
        return None
    item = _updated_item.load(rows[0])
    item.example = _example_image.load((item.example_id, rows[0][-1]))
    return Claimed(item, _lease(claim, item))


def lease_next_practice(claim: Claim) -> tuple[int, int] | None:
    """Lease the participant's next practice item: (assignment id, item id); None if they
    have had every one (``claim.stratum`` unused)."""
    rows = _LEASE_NEXT_PRACTICE.fetch(
        claim.study.pk, claim.participant.pk, claim.public_id, claim.served_at, claim.expires_at
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def _lease(claim: Claim, item: StudyItem) -> int:
    rows = _LEASE.fetch(
        claim.participant.pk, item.pk, claim.public_id, claim.served_at, claim.expires_at
    )
    return int(rows[0][0])


# ON CONFLICT on the client key only: a label this participant already stored under
# the same key (two copies of one submission) is kept, and the caller returns that
# label; any other conflict is a bug and raises (the ORM's create() would raise on
# every conflict, aborting the caller's transaction).
_STORE_LABEL = Statement(
    "store_label",
    lambda d: (
        f"INSERT INTO {table(Label)} (assignment_id, participant_id, item_id, value, "
        "client_key, client_response_ms, server_response_ms, created_at, is_correct, too_fast, "
        "exposure_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        "ON CONFLICT (participant_id, client_key) DO NOTHING RETURNING id"
    ),
    [
        _field(Label, name)
        for name in (
            "assignment",
            "participant",
            "item",
            "value",
            "client_key",
            "client_response_ms",
            "server_response_ms",
            "created_at",
            "is_correct",
            "too_fast",
            "exposure_ms",
        )
    ],
)
_MARK_ANSWERED = Statement(
    "mark_answered",
    lambda d: (
        f"UPDATE {table(Assignment)} SET status = '{Assignment.Status.LABELLED.value}', "
        "answered_at = $2, exposure_ms = $3 WHERE id = $1"
    ),
    [
        _field(Assignment, "id"),
        _field(Assignment, "answered_at"),
        _field(Assignment, "exposure_ms"),
    ],
)
_COUNT_LABEL = Statement(
    "count_label",
    lambda d: f"UPDATE {table(StudyItem)} SET labelled_count = labelled_count + 1 WHERE id = $1",
    [_field(StudyItem, "id")],
)


@transaction.atomic(savepoint=False)
def insert_label(label: Label) -> int | None:
    """Store a new label, its assignment answered (when, and the image's measured exposure),
    its item's count; None if its key was used."""
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
        label.exposure_ms,
    )
    if not rows:
        return None
    _MARK_ANSWERED.fetch(label.assignment_id, label.created_at, label.exposure_ms)
    _COUNT_LABEL.fetch(label.item_id)
    return int(rows[0][0])
