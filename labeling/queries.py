"""Reads for the annotator's pages: where a participant is in the flow, the answer buttons."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from labeling.models import Participant
from study.models import CANT_TELL, Study, StudyItem

_PREVIEW_PRACTICE = 3
_PREVIEW_TRIALS = 6


class Step(StrEnum):
    """A participant's place in the flow; each has its page (the URL name is the value)."""

    CONSENT = "consent"
    DECLINED = "declined"
    INSTRUCTIONS = "instructions"
    LABEL = "label"
    DONE = "done"


def current_step(participant: Participant) -> Step:
    if participant.declined_at is not None:
        return Step.DECLINED
    if participant.completed_at is not None:
        return Step.DONE
    if participant.consented_at is None:
        return Step.CONSENT
    if participant.instructions_read_at is None:
        return Step.INSTRUCTIONS
    return Step.LABEL


@dataclass(frozen=True)
class Choice:
    value: int
    text: str
    key: str  # the keyboard key that gives this answer; "" when it has none


# Digit keys answer up to ten classes; beyond, the answers are found by typing their name
# (labeling/_answers.html's filter), and no answer has a key.
MAX_KEYED_CLASSES = 10


def answer_choices(study: Study) -> list[Choice]:
    """The study's answers in order, each with its key: its digit, or N for "can't tell"."""
    values = [int(choice["value"]) for choice in study.label_choices]
    keyed = sum(value != CANT_TELL for value in values) <= MAX_KEYED_CLASSES
    return [
        Choice(value, str(choice["text"]), _key_for(value) if keyed else "")
        for value, choice in zip(values, study.label_choices, strict=True)
    ]


def _key_for(value: int) -> str:
    if value == CANT_TELL:
        return "n"
    return str(value) if 0 <= value <= 9 else ""


def choice_text(study: Study, value: int | None) -> str:
    texts = {choice.value: choice.text for choice in answer_choices(study)}
    return texts.get(value, "") if value is not None else ""


def practice_items(study: Study) -> list[StudyItem]:
    return list(
        StudyItem.objects.filter(study=study, kind=StudyItem.Kind.PRACTICE)
        .select_related("example")
        .order_by("shuffle_key", "id")
    )


def example_item(study: Study) -> StudyItem | None:
    """The image an MTurk preview shows: a practice item (a clean image outside the study)."""
    items = practice_items(study)
    return items[0] if items else None


def preview_sample(study: Study) -> tuple[list[StudyItem], list[StudyItem]]:
    """A few practice items and a few trials, as the researcher's preview shows them."""
    trials = list(
        StudyItem.objects.filter(study=study)
        .exclude(kind=StudyItem.Kind.PRACTICE)
        .select_related("example")
        .order_by("shuffle_key", "id")[:_PREVIEW_TRIALS]
    )
    return practice_items(study)[:_PREVIEW_PRACTICE], trials
