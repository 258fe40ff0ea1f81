"""What a participant's end gives them: the study's completion code, or the excluded outcome.

A participant whose session an exclusion ended (by the study's rules, or by a researcher
while they were labelling) gets what the study chose for excluded participants: the
screen-out code (Prolific counts them as screened out), the completion code, or no code
at all. One excluded after they had finished got the completion code then, and keeps
it. The end page says nothing of why, whatever the code (docs/studies.md, "Excluding
by hand").
"""

from __future__ import annotations

from labeling.models import Participant
from study.models import ExclusionDecision, Study

Outcome = Study.ExcludedOutcome


def end_code(study: Study, participant: Participant) -> str | None:
    """The code the participant's end gives; None: a thank-you and no code."""
    if not participant.excluded or not ended_by_exclusion(participant):
        return study.completion_code
    if study.excluded_outcome == Outcome.SCREEN_OUT:
        return study.screen_out_code
    if study.excluded_outcome == Outcome.COMPLETION:
        return study.completion_code
    return None


def ended_by_exclusion(participant: Participant) -> bool:
    return ExclusionDecision.objects.filter(
        participant=participant, excluded=True, ended_session=True
    ).exists()
