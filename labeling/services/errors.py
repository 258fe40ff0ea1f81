"""Why an annotator-side write was refused. Each leaves the database unchanged."""

from __future__ import annotations


class StudyNotOpen(ValueError):
    """The study does not accept participants, or hand out items, now."""


class EntryRefused(ValueError):
    """A recruiter link or lab code that cannot start a participation."""


class NotEligible(EntryRefused):
    """The person took part in a study this one excludes; the message says no more than that."""


class AssignmentBusy(RuntimeError):
    """Items are free but all locked by concurrent claims; the caller should retry."""


class LabelRejected(ValueError):
    """A submission that cannot be stored; nothing was changed."""

    http_status = 409


class AnsweredLate(LabelRejected):
    """An answer past a timed trial's deadline: the trial is stored as timed out, not labelled.

    The one refusal that changes something: the timeout stands (docs/studies.md, "Timing").
    """


class NotYourItem(LabelRejected):
    http_status = 403


class InvalidAnswer(LabelRejected):
    http_status = 400


class StudyFull(StudyNotOpen):
    """Every main and control item has its k labels: no one new is admitted."""


class StudyClosed(StudyNotOpen):
    """Closed for good: nothing is handed out or answered again."""


class NotAnswerable(LabelRejected):
    """The study's state takes no answer to this trial now (closed; paused, and not on screen)."""

    def __init__(self, message: str, *, closed: bool = False) -> None:
        super().__init__(message)
        self.closed = closed
