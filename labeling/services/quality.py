"""Quality control on each answer: gold answers, too-fast answers, and the exclusion rules.

An excluded participant's labels are kept (analysis leaves them out by default), but
their slots reopen for others (``labeling.services.exclusion``); their participation
ends. A rule broken at an attention check takes effect at a neutral point: after the
next main or control trial, or at the end of the list, never right after the check.
"""

from __future__ import annotations

from labeling.models import Participant
from labeling.services.assignment import planned_attention_checks
from labeling.services.exclusion import exclude_by_rules
from study.models import Study, StudyItem

_GOLD_KINDS = (StudyItem.Kind.ATTENTION, StudyItem.Kind.PRACTICE)


def is_correct(item: StudyItem, value: int) -> bool | None:
    """For attention and practice items: whether the answer is the expected one."""
    if item.kind not in _GOLD_KINDS or item.expected_label is None:
        return None
    return value == item.expected_label


def is_too_fast(study: Study, client_ms: float | None, server_ms: int) -> bool:
    # The browser's clock starts at the image's onset; the server's starts earlier (when
    # the item became current), so it is only the fallback for a page that sent none.
    measured = client_ms if client_ms is not None else server_ms
    return measured < study.min_response_ms


def count_answer(
    participant: Participant, item: StudyItem, *, correct: bool | None, too_fast: bool
) -> None:
    """Update a locked participant's counters for one answer, and exclude them if due."""
    if item.kind == StudyItem.Kind.PRACTICE:
        return  # practice is for learning: never held against anyone
    counted = correct is False or too_fast
    if correct is False:
        participant.attention_failures += 1
    if too_fast:
        participant.fast_responses += 1
    at_check = item.kind == StudyItem.Kind.ATTENTION
    # Not at a check, an exclusion that a check left pending takes effect now.
    if counted or (not at_check and not participant.excluded and exclusion_reasons(participant)):
        _save_and_apply_rules(participant, at_check=at_check)


def count_missed_check(participant: Participant) -> None:
    """An attention check left unanswered until the deadline counts as failed."""
    participant.attention_failures += 1
    _save_and_apply_rules(participant, at_check=True)


def _save_and_apply_rules(participant: Participant, *, at_check: bool) -> None:
    participant.save(update_fields=["attention_failures", "fast_responses"])
    reasons = exclusion_reasons(participant)
    # Ended right after a check, a session would tell that the item was a check and
    # that it was failed: the participant goes on to a neutral point first.
    if reasons and not at_check:
        exclude_by_rules(participant, reasons)


def exclude_if_rules_broken(participant: Participant) -> None:
    """At the end of a locked participant's list: an exclusion still pending applies."""
    reasons = exclusion_reasons(participant)
    if reasons and not participant.excluded:
        exclude_by_rules(participant, reasons)


def exclusion_reasons(participant: Participant) -> list[str]:
    """The broken rules, in sentences a researcher reads on the participants' list."""
    study = participant.study
    reasons = []
    if participant.attention_failures > study.max_attention_failures:
        checks = planned_attention_checks(study)
        reasons.append(
            f"failed {participant.attention_failures} of {checks} attention "
            f"{_plural(checks, 'check')} ({study.max_attention_failures} allowed)"
        )
    if participant.fast_responses > study.max_fast_responses:
        reasons.append(
            f"answered {participant.fast_responses} "
            f"{_plural(participant.fast_responses, 'image')} faster than "
            f"{study.min_response_ms} ms ({study.max_fast_responses} allowed)"
        )
    return reasons


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"
