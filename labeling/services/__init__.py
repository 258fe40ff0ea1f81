"""Annotator-side writes: joining, claiming the next item, submitting a label.

Rule 5 of docs/architecture.md: no label is lost or doubled. An item's ``assigned_count`` (leases
plus labels) only grows through a conditional UPDATE that checks it stays below
k, so two annotators racing for the last slot cannot both win; a candidate row
is read ``FOR NO KEY UPDATE SKIP LOCKED`` so that racers pick different items
rather than queue on one. NO KEY: a plain FOR UPDATE conflicts with the KEY
SHARE lock that inserting a label takes on its item (the foreign-key check),
and a submitter upgrading that lock to bump the item's counter then deadlocks
with a queued claimer.

Strata (balanced trial lists) only choose which candidate rows a claim tries
to lock; the claim itself is the same one-row SKIP LOCKED lock and conditional
UPDATE. Every write for one participant first locks that participant's row
(NO KEY), then the assignment, then the item: one order, so no cycle.

The modules: ``participation`` (entry and the steps before labelling),
``assignment`` (the engine: trial order, claims, leases), ``submission``
(labels and timeouts), ``timing`` (a timed study's deadline on the server's clock,
and the trial on screen), ``quality`` (attention checks, fast answers, the exclusion
rules), ``exclusion`` (excluding and re-including, by the rules or by hand: the
slots of an excluded participant's labels reopen).
"""

from labeling.services.assignment import (
    Phase,
    Progress,
    Trial,
    attention_positions,
    lease_duration,
    next_assignment,
    next_trial,
    planned_attention_checks,
    release_expired_leases,
)
from labeling.services.errors import (
    AssignmentBusy,
    EntryRefused,
    InvalidAnswer,
    LabelRejected,
    NotAnswerable,
    NotEligible,
    NotYourItem,
    StudyClosed,
    StudyFull,
    StudyNotOpen,
)
from labeling.services.participation import (
    complete_participation,
    decline_consent,
    enter_study,
    enter_with_lab_code,
    external_id_hash,
    give_consent,
    join_study,
    joined_at,
    mark_instructions_read,
    refuse_participants_of_excluded_studies,
    require_open,
)
from labeling.services.quality import exclusion_reasons
from labeling.services.submission import (
    Answer,
    Answered,
    answer_and_continue,
    record_timeout,
    submit_label,
)

__all__ = [
    "Answer",
    "Answered",
    "AssignmentBusy",
    "EntryRefused",
    "InvalidAnswer",
    "LabelRejected",
    "NotAnswerable",
    "NotEligible",
    "NotYourItem",
    "Phase",
    "Progress",
    "StudyClosed",
    "StudyFull",
    "StudyNotOpen",
    "Trial",
    "answer_and_continue",
    "attention_positions",
    "complete_participation",
    "decline_consent",
    "enter_study",
    "enter_with_lab_code",
    "exclusion_reasons",
    "external_id_hash",
    "give_consent",
    "join_study",
    "joined_at",
    "lease_duration",
    "mark_instructions_read",
    "next_assignment",
    "next_trial",
    "planned_attention_checks",
    "record_timeout",
    "refuse_participants_of_excluded_studies",
    "release_expired_leases",
    "require_open",
    "submit_label",
]
