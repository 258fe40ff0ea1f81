"""A study's audit log: who exported it, took a payment file, excluded, re-included or
deleted a participant, shared it or changed its status, which participant withdrew, and when
(docs/studies.md, "The audit log").

``record`` is called where each action happens, inside the action's transaction where it
has one, so that an action and its record commit or roll back together. Nothing is
recorded per label: the labelling loop records only the exclusions its rules make.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User

from config.spreadsheets import text_cell
from study.models import AuditEvent, Study

Action = AuditEvent.Action
LATEST_ON_PAGE = 20
BY_THE_RULES = "the study's rules"
THE_PARTICIPANT = "the participant"  # a withdrawal: no researcher acted
CSV_COLUMNS = ("created_at", "actor", "action", "summary", "detail")


@dataclass(frozen=True)
class AuditRow:
    """An event as the study page and the CSV show it."""

    created_at: datetime
    actor: str
    action: str  # the code the CSV gives, as AuditEvent.Action
    action_label: str  # the words the page gives
    summary: str
    detail: Mapping[str, object]


def record(
    study: Study, actor: User | None, action: str, detail: Mapping[str, object]
) -> AuditEvent:
    """Note that ``actor`` (None: the study's rules, or a participant who withdrew) did
    ``action`` to ``study``."""
    return AuditEvent.objects.create(study=study, actor=actor, action=action, detail=dict(detail))


def latest(study: Study, count: int = LATEST_ON_PAGE) -> list[AuditRow]:
    """The study's ``count`` latest events, newest first."""
    return rows(study.audit_events.select_related("actor")[:count])


def rows(events: Iterable[AuditEvent]) -> list[AuditRow]:
    return [
        AuditRow(
            created_at=event.created_at,
            actor=_actor(event),
            action=event.action,
            action_label=event.get_action_display(),
            summary=summary(event.action, event.detail),
            detail=event.detail,
        )
        for event in events
    ]


def _actor(event: AuditEvent) -> str:
    if event.actor is not None:
        return event.actor.username
    return THE_PARTICIPANT if event.action == Action.WITHDRAWAL else BY_THE_RULES


def summary(action: str, detail: Mapping[str, object]) -> str:
    """One line that says what was done, from the event's detail."""
    get = detail.get
    if action == Action.EXPORT:
        excluded = ", excluded participants included" if get("include_excluded") else ""
        return f"{get('table')} as {get('format')}{excluded}"
    if action == Action.PAYMENT_FILE:
        return f"{get('file')}, {get('rows')} row(s)"
    if action in (Action.EXCLUSION, Action.REINCLUSION):
        return f"participant {get('participant_id')}: {get('reason')}"
    if action == Action.DELETION:
        return (
            f"participant {get('participant_id')}, {get('labels_deleted')} label(s): "
            f"{get('reason')}"
        )
    if action == Action.WITHDRAWAL:
        if get("policy") == Study.WithdrawalPolicy.ANONYMISE:
            what = f"{get('labels_kept')} label(s) kept, anonymised"
        else:
            what = f"{get('labels_deleted')} label(s) deleted"
        return f"participant {get('participant_id')} withdrew: {what}"
    if action == Action.COLLABORATOR_ADDED:
        before = f" (was {get('previous_role')})" if get("previous_role") else ""
        return f"{get('username')} as {get('role')}{before}"
    if action == Action.COLLABORATOR_REMOVED:
        return f"{get('username')} (was {get('role')})"
    if action == Action.STATUS_CHANGE:
        return f"{get('from')} → {get('to')}"
    return json.dumps(detail, sort_keys=True)


def log_csv(study: Study) -> str:
    """The study's whole log, newest first; researchers' text never runs as a formula."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows(study.audit_events.select_related("actor").iterator()):
        writer.writerow(
            (
                row.created_at.isoformat(),
                text_cell(row.actor),
                row.action,
                text_cell(row.summary),
                text_cell(json.dumps(row.detail, sort_keys=True, ensure_ascii=False)),
            )
        )
    return out.getvalue()
