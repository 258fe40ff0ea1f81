"""The owner's payment files: whom to approve, reject or pay a bonus, as Prolific and MTurk take
them. Reads only; ``study.services.record_payment_download`` records each download.

Prolific's bulk bonus takes ``<participant_id>,<amount>`` lines with no header, the amount a
decimal in the study's currency (``60ffe5c8371090c7041d43f8,4.25``); its bulk approval takes
IDs one per line. MTurk's batch review takes the results CSV back with an ``x`` under
``Approve`` or the reason under ``Reject``, row by ``AssignmentId``.

Only completed participants who are not excluded are approved and paid a bonus; an excluded
one is rejected (MTurk) or withheld (Prolific) with the exclusion's reasons, as the end they
were given says: one whose session an exclusion ended got the study's ``excluded_outcome``
(labeling/ending.py), so on Prolific they were "screened out" by the screen-out code, and with
no code at all they had nothing to submit ("no code"); a participant excluded after they had
finished submitted the completion code.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q
from django.http import HttpResponse

from config.spreadsheets import text_cell
from study.models import (
    ANALYSED_ITEM_KINDS,
    ExclusionDecision,
    PaymentFileDownload,
    Study,
    StudyItem,
)
from study.recruiter_ids import decrypt_external_id

File = PaymentFileDownload.File
Recruitment = Study.Recruitment

FILES_OF: dict[str, tuple[str, ...]] = {
    Recruitment.PROLIFIC: (File.PROLIFIC_BONUSES, File.PROLIFIC_APPROVALS, File.PAYMENTS),
    Recruitment.MTURK: (File.MTURK_REVIEW, File.PAYMENTS),
}
MTURK_REVIEW_COLUMNS = ("AssignmentId", "WorkerId", "Approve", "Reject")
PAYMENTS_COLUMNS = ("platform", "participant_id", "assignment_id", "outcome", "bonus", "reason")
APPROVE, REJECT, WITHHOLD = "approve", "reject", "withhold"
NOT_COMPLETED, DECLINED, WITHDRAWN = "not completed", "declined consent", "withdrew"
SCREENED_OUT, NO_CODE = "screened out", "no code"
Outcome = Study.ExcludedOutcome


@dataclass(frozen=True)
class Payee:
    platform: str
    external_id: str | None  # None where no id is stored, or no configured key opens it
    assignment_id: str  # MTurk's; "" for Prolific
    outcome: str
    bonus: Decimal
    reason: str


@dataclass(frozen=True)
class PaymentFile:
    name: str
    content_type: str
    text: str
    rows: int


def files_for(study: Study) -> tuple[str, ...]:
    """The payment files a study's recruiter takes; none for open links and lab codes."""
    return FILES_OF.get(study.recruitment, ())


def payment_file(study: Study, name: str) -> PaymentFile | None:
    """The file called ``name`` for ``study``, or None if its recruiter takes no such file."""
    if name not in files_for(study):
        return None
    rows = _BUILDERS[name](payees(study))
    content_type = "text/plain" if name.endswith(".txt") else "text/csv"
    return PaymentFile(name, f"{content_type}; charset=utf-8", _text(name, rows), len(rows))


def as_response(study: Study, built: PaymentFile) -> HttpResponse:
    response = HttpResponse(built.text, content_type=built.content_type)
    response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-{built.name}"'
    response["Cache-Control"] = "private, no-store"  # it holds the participants' ids
    return response


def payees(study: Study) -> list[Payee]:
    """Every participant who came through Prolific or MTurk, with what they are owed."""
    rows = (
        study.participants.filter(source__in=tuple(FILES_OF))
        .annotate(
            correct_checks=Count(
                "labels",
                filter=Q(labels__item__kind=StudyItem.Kind.ATTENTION, labels__is_correct=True),
            ),
            labelled=Count("labels", filter=Q(labels__item__kind__in=ANALYSED_ITEM_KINDS)),
            ended_by_exclusion=Exists(
                ExclusionDecision.objects.filter(
                    participant=OuterRef("pk"), excluded=True, ended_session=True
                )
            ),
        )
        .order_by("id")
        .values(
            "source",
            "external_id_encrypted",
            "recruiter_session",
            "completed_at",
            "declined_at",
            "withdrawn_at",
            "excluded",
            "exclusion_reasons",
            "correct_checks",
            "labelled",
            "ended_by_exclusion",
        )
    )
    return [_payee(study, row) for row in rows]


def _payee(study: Study, row: Mapping[str, Any]) -> Payee:
    outcome, reason = _outcome(study, row)
    bonus = Decimal(0)
    if outcome == APPROVE:
        bonus = (
            row["correct_checks"] * study.bonus_per_attention_check
            + row["labelled"] * study.bonus_per_item
        )
    token = row["external_id_encrypted"]
    external_id = decrypt_external_id(token) if token else None
    if external_id is None and outcome != WITHDRAWN:
        reason = "; ".join(filter(None, [reason, "recruiter id not stored or unreadable"]))
    session = row["recruiter_session"] or {}
    return Payee(
        platform=row["source"],
        external_id=external_id,
        assignment_id=str(session.get("assignment_id", "")),
        outcome=outcome,
        bonus=bonus,
        reason=reason,
    )


def _outcome(study: Study, row: Mapping[str, Any]) -> tuple[str, str]:
    if row["declined_at"] is not None:
        return DECLINED, ""
    if row["withdrawn_at"] is not None:
        # They return the study on their recruiter's site, which pays nothing.
        return WITHDRAWN, "recruiter id deleted when they withdrew"
    if row["completed_at"] is None:
        return NOT_COMPLETED, ""
    if not row["excluded"]:
        return APPROVE, ""
    reasons = "; ".join(row["exclusion_reasons"]) or "excluded"
    mturk = row["source"] == Recruitment.MTURK
    if row["ended_by_exclusion"] and study.excluded_outcome == Outcome.NO_CODE:
        return NO_CODE, reasons  # nothing to submit: MTurk's review file leaves them out
    if row["ended_by_exclusion"] and study.excluded_outcome == Outcome.SCREEN_OUT and not mturk:
        return SCREENED_OUT, reasons  # Prolific pays them as its screen-out rule says
    return (REJECT if mturk else WITHHOLD), reasons


def _prolific_bonuses(payees: list[Payee]) -> list[tuple[str, ...]]:
    return [
        (payee.external_id, f"{payee.bonus:.2f}")
        for payee in payees
        if payee.outcome == APPROVE and payee.bonus > 0 and payee.external_id
    ]


def _prolific_approvals(payees: list[Payee]) -> list[tuple[str, ...]]:
    return [
        (payee.external_id,) for payee in payees if payee.outcome == APPROVE and payee.external_id
    ]


def _mturk_review(payees: list[Payee]) -> list[tuple[str, ...]]:
    """Submitted HITs only: an unfinished participation has no assignment to review."""
    return [
        (
            payee.assignment_id,
            payee.external_id or "",
            "x" if payee.outcome == APPROVE else "",
            text_cell(payee.reason) if payee.outcome == REJECT else "",
        )
        for payee in payees
        if payee.outcome in (APPROVE, REJECT) and payee.assignment_id
    ]


def _payments(payees: list[Payee]) -> list[tuple[str, ...]]:
    return [
        (
            payee.platform,
            payee.external_id or "",
            payee.assignment_id,
            payee.outcome,
            f"{payee.bonus:.2f}",
            text_cell(payee.reason),
        )
        for payee in payees
    ]


_BUILDERS: dict[str, Callable[[list[Payee]], list[tuple[str, ...]]]] = {
    File.PROLIFIC_BONUSES: _prolific_bonuses,
    File.PROLIFIC_APPROVALS: _prolific_approvals,
    File.MTURK_REVIEW: _mturk_review,
    File.PAYMENTS: _payments,
}
_HEADERS: dict[str, tuple[str, ...]] = {
    File.MTURK_REVIEW: MTURK_REVIEW_COLUMNS,
    File.PAYMENTS: PAYMENTS_COLUMNS,
}


def _text(name: str, rows: list[tuple[str, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if name in _HEADERS:
        writer.writerow(_HEADERS[name])
    writer.writerows(rows)
    return out.getvalue()
