"""The figures kept at every answer, counted again from the labels themselves.

The statement that stores a label also counts it: the item's votes by answer and the
participant's figures (labeling.services.statements). The exports read those rather
than a million labels, so they must never drift. ``drift`` recounts them the slow,
plain way (the ORM and Python's statistics) for the integrity checks of the tests
and of the load benchmark; ``recount`` writes the counts afresh (``manage.py
recount_tallies``), for labels stored by code that did not keep them: a web process
still running the previous release while the migration that added them ran, or rows
loaded by hand.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Count, QuerySet

from labeling.models import Label, Participant
from study.models import ANALYSED_ITEM_KINDS, Study, StudyItem


@dataclass(frozen=True)
class Figures:
    analysed_labels: int = 0
    attention_answers: int = 0
    first_label_at: datetime | None = None
    last_label_at: datetime | None = None
    median_client_response_ms: float | None = None
    median_server_response_ms: float | None = None

    @classmethod
    def kept(cls, participant: Participant) -> Figures:
        return cls(**{name: getattr(participant, name) for name in cls.__dataclass_fields__})

    def matches(self, other: Figures) -> bool:
        """Equal, the medians to rounding (PostgreSQL interpolates as lo + (hi - lo) / 2)."""
        medians = ("median_client_response_ms", "median_server_response_ms")
        return all(
            _close(getattr(self, name), getattr(other, name))
            if name in medians
            else getattr(self, name) == getattr(other, name)
            for name in self.__dataclass_fields__
        )


@dataclass(frozen=True)
class Drift:
    """Items and participants whose kept figures differ from their labels."""

    items: list[int]
    participants: list[int]

    def __bool__(self) -> bool:
        return bool(self.items or self.participants)


def _close(a: float | None, b: float | None) -> bool:
    return a == b if a is None or b is None else math.isclose(a, b, rel_tol=1e-12)


def median_of_present(values: Iterable[float | None]) -> float | None:
    """PostgreSQL's percentile_cont(0.5): nulls left out, the middle two averaged."""
    present = [value for value in values if value is not None]
    return float(statistics.median(present)) if present else None


def counted_votes(study: Study) -> dict[int, dict[str, int]]:
    """Every item's labels by answer, as ``StudyItem.votes`` keeps them."""
    votes: dict[int, dict[str, int]] = {
        pk: {} for pk in StudyItem.objects.filter(study=study).values_list("pk", flat=True)
    }
    grouped = Label.objects.filter(item__study=study).values_list("item_id", "value")
    for item_id, value, n in grouped.annotate(n=Count("id")).order_by():
        votes[item_id][str(value)] = n
    return votes


def counted_figures(study: Study) -> dict[int, Figures]:
    """Every participant's figures, as the participant row keeps them."""
    return _figures_of(Participant.objects.filter(study=study))


def figures_of(participant_id: int) -> Figures:
    """One participant's figures, counted from their labels."""
    return _figures_of(Participant.objects.filter(pk=participant_id))[participant_id]


def _figures_of(participants: QuerySet[Participant]) -> dict[int, Figures]:
    labels = Label.objects.filter(participant__in=participants)
    analysed: defaultdict[int, list[tuple[float | None, int, datetime]]] = defaultdict(list)
    rows = labels.filter(item__kind__in=ANALYSED_ITEM_KINDS)
    for participant_id, *times in rows.values_list(
        "participant_id", "client_response_ms", "server_response_ms", "created_at"
    ).order_by():
        analysed[participant_id].append(tuple(times))  # type: ignore[arg-type]
    attention = dict(
        labels.filter(item__kind=StudyItem.Kind.ATTENTION)
        .values_list("participant_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {
        pk: _figures(analysed.get(pk, []), attention.get(pk, 0))
        for pk in participants.values_list("pk", flat=True)
    }


def _figures(labels: list[tuple[float | None, int, datetime]], attention: int) -> Figures:
    times = [created_at for _, _, created_at in labels]
    return Figures(
        analysed_labels=len(labels),
        attention_answers=attention,
        first_label_at=min(times, default=None),
        last_label_at=max(times, default=None),
        median_client_response_ms=median_of_present(client for client, _, _ in labels),
        median_server_response_ms=median_of_present(server for _, server, _ in labels),
    )


def drift(study: Study) -> Drift:
    votes = counted_votes(study)
    figures = counted_figures(study)
    kept_votes = dict(StudyItem.objects.filter(study=study).values_list("pk", "votes"))
    kept_figures = {p.pk: Figures.kept(p) for p in Participant.objects.filter(study=study)}
    return Drift(
        items=sorted(pk for pk, counts in votes.items() if kept_votes[pk] != counts),
        participants=sorted(
            pk for pk, counted in figures.items() if not kept_figures[pk].matches(counted)
        ),
    )


@transaction.atomic
def recount(study: Study) -> None:
    """Write the study's votes and participants' figures afresh from its labels.

    No label may arrive meanwhile (it would be counted by its statement and then
    overwritten, or the other way round): on PostgreSQL the labels table is locked
    against writes for the few seconds it takes; SQLite has one writer already.
    """
    if connection.vendor != "postgresql":
        _recount_portably(study)
        return
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {Label._meta.db_table} IN SHARE MODE")
        for statement in _RECOUNT:
            cursor.execute(statement, {"study": study.pk, "analysed": list(ANALYSED_ITEM_KINDS)})


def _recount_portably(study: Study) -> None:
    for pk, votes in counted_votes(study).items():
        StudyItem.objects.filter(pk=pk).update(votes=votes)
    for pk, figures in counted_figures(study).items():
        Participant.objects.filter(pk=pk).update(**asdict(figures))


_ITEM, _PARTICIPANT = StudyItem._meta.db_table, Participant._meta.db_table
_LABEL = Label._meta.db_table
_RECOUNT = (
    f"""UPDATE {_ITEM} i SET votes = coalesce(c.counts, '{{}}'::jsonb)
        FROM {_ITEM} own LEFT JOIN (
            SELECT item_id, jsonb_object_agg(value, n) AS counts
            FROM (SELECT l.item_id, l.value, count(*) AS n
                  FROM {_LABEL} l JOIN {_ITEM} li ON li.id = l.item_id
                  WHERE li.study_id = %(study)s GROUP BY 1, 2) by_value
            GROUP BY item_id
        ) c ON c.item_id = own.id
        WHERE own.id = i.id AND own.study_id = %(study)s""",
    f"""UPDATE {_PARTICIPANT} p SET
            analysed_labels = coalesce(a.n, 0), attention_answers = coalesce(g.n, 0),
            first_label_at = a.first_at, last_label_at = a.last_at,
            median_client_response_ms = a.client_ms, median_server_response_ms = a.server_ms
        FROM {_PARTICIPANT} own
        LEFT JOIN (
            SELECT l.participant_id, count(*) AS n, min(l.created_at) AS first_at,
                   max(l.created_at) AS last_at,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY l.client_response_ms) AS client_ms,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY l.server_response_ms) AS server_ms
            FROM {_LABEL} l JOIN {_ITEM} i ON i.id = l.item_id
            WHERE i.study_id = %(study)s AND i.kind = ANY(%(analysed)s) GROUP BY 1
        ) a ON a.participant_id = own.id
        LEFT JOIN (
            SELECT l.participant_id, count(*) AS n
            FROM {_LABEL} l JOIN {_ITEM} i ON i.id = l.item_id
            WHERE i.study_id = %(study)s AND i.kind = '{StudyItem.Kind.ATTENTION.value}'
            GROUP BY 1
        ) g ON g.participant_id = own.id
        WHERE own.id = p.id AND own.study_id = %(study)s""",
)
