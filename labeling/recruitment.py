"""What recruiters put in our URL, and the URLs we send participants back to.

Prolific appends PROLIFIC_PID, STUDY_ID and SESSION_ID; its completion URL takes
the study's code. MTurk's ExternalQuestion appends assignmentId, hitId, workerId
and turkSubmitTo (assignmentId is ASSIGNMENT_ID_NOT_AVAILABLE while the worker
previews the HIT); the finished HIT is a form POSTed to turkSubmitTo +
/mturk/externalSubmit. turkSubmitTo comes from the URL, so it is checked against
MTurk's own hosts: otherwise our page would post to wherever a link says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete"
MTURK_PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"
MTURK_HOSTS = frozenset({"www.mturk.com", "workersandbox.mturk.com"})
MTURK_SUBMIT_PATH = "/mturk/externalSubmit"
_MAX_ID_LENGTH = 200
# One person, one id: Prolific's ids are 24 hexadecimal digits, MTurk's worker ids upper-case
# letters and digits. Anything else (a suffix, a typo) would start a second participation.
_PROLIFIC_ID = re.compile(r"[0-9a-f]{24}")
_MTURK_WORKER_ID = re.compile(r"[A-Z0-9]{1,64}")


class InvalidRecruiterLink(ValueError):
    """The recruiter's parameters are missing or malformed."""


@dataclass(frozen=True)
class RecruiterEntry:
    external_id: str
    session: dict[str, str] = field(default_factory=dict)


def _param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value or len(value) > _MAX_ID_LENGTH:
        raise InvalidRecruiterLink(f"the link is missing {name}")
    return value


def normalised_external_id(source: str, external_id: str) -> str:
    """The recruiter's id as it is stored and compared; a malformed one is refused."""
    if source == "prolific":
        folded = external_id.strip().lower()
        if not _PROLIFIC_ID.fullmatch(folded):
            raise InvalidRecruiterLink("the link's PROLIFIC_PID is not a Prolific ID")
        return folded
    if source == "mturk":
        upper = external_id.strip().upper()
        if not _MTURK_WORKER_ID.fullmatch(upper):
            raise InvalidRecruiterLink("the link's workerId is not an MTurk worker ID")
        return upper
    return external_id


def prolific_entry(params: Mapping[str, str]) -> RecruiterEntry:
    return RecruiterEntry(
        normalised_external_id("prolific", _param(params, "PROLIFIC_PID")),
        {
            "study_id": params.get("STUDY_ID", "")[:_MAX_ID_LENGTH],
            "session_id": params.get("SESSION_ID", "")[:_MAX_ID_LENGTH],
        },
    )


def prolific_completion_url(code: str) -> str:
    return f"{PROLIFIC_COMPLETE_URL}?{urlencode({'cc': code})}"


def is_mturk_preview(params: Mapping[str, str]) -> bool:
    return params.get("assignmentId", MTURK_PREVIEW_ASSIGNMENT) == MTURK_PREVIEW_ASSIGNMENT


def mturk_entry(params: Mapping[str, str]) -> RecruiterEntry:
    turk_submit_to = _param(params, "turkSubmitTo")
    mturk_submit_url(turk_submit_to)  # refuse a bad one now, not at the end of the study
    return RecruiterEntry(
        normalised_external_id("mturk", _param(params, "workerId")),
        {
            "assignment_id": _param(params, "assignmentId"),
            "hit_id": _param(params, "hitId"),
            "turk_submit_to": turk_submit_to,
        },
    )


def mturk_submit_url(turk_submit_to: str) -> str:
    """turkSubmitTo's externalSubmit URL, if it is an https URL of MTurk's; else refused."""
    parts = urlsplit(turk_submit_to)
    if (
        parts.scheme != "https"
        or parts.hostname not in MTURK_HOSTS
        or parts.netloc != parts.hostname  # no user, password or port
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise InvalidRecruiterLink("turkSubmitTo is not an MTurk address")
    return f"https://{parts.hostname}{MTURK_SUBMIT_PATH}"
