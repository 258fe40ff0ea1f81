"""What a researcher asks for when designing a study, before any row exists.

A ``StudyDesign`` is plain data: the designer form builds one, ``study.services``
checks and stores it, ``study.queries.design_of`` reads one back from a study
(to edit a draft or copy a study).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError

from attacks.engine.datasets import DATASETS
from attacks.models import AttackSetting
from study.models import Study


@dataclass(frozen=True)
class SettingSample:
    """The first ``count`` examples of ``setting``, in its seeded source order."""

    setting: AttackSetting
    count: int


@dataclass(frozen=True)
class StudyDesign:
    title: str
    instructions: str
    # Main items: the examples under study, each labelled exactly labels_per_item times.
    samples: tuple[SettingSample, ...]
    items_per_participant: int
    labels_per_item: int
    # Clean images labelled like main items: the human baseline.
    controls: SettingSample | None = None
    # Gold items (clean images, answer = their class); each participant gets
    # attention_checks_per_participant of them, drawn from this pool.
    attention: SettingSample | None = None
    attention_checks_per_participant: int = 0
    # The instructions say that some images have known answers (not which).
    tells_of_known_answers: bool = False
    # Shown first, with feedback; never analysed. Every participant gets all of them.
    practice: SettingSample | None = None
    # The dataset's class indices offered as answers; None offers every class.
    classes: tuple[int, ...] | None = None
    cant_tell: bool = True  # offer "none / can't tell"
    seed: int = 0
    presentation: str = Study.Presentation.UNLIMITED
    exposure_ms: int | None = None
    response_deadline_ms: int | None = None
    recruitment: str = Study.Recruitment.OPEN
    lab_code_count: int = 0  # lab recruitment only: one-time codes to generate
    consent_text: str = ""
    # What annotators read as the study's name, its expected length and whom to contact:
    # the consent page shows them (the internal title never reaches an annotator).
    public_title: str = ""
    expected_minutes: int | None = None
    contact: str = ""
    # What becomes of a participant's answers when they withdraw; the consent page says.
    withdrawal_policy: str = Study.WithdrawalPolicy.DELETE
    max_attention_failures: int = 0
    min_response_ms: int = 250
    max_fast_responses: int = 3
    # What the end gives a participant whose session an exclusion ended.
    excluded_outcome: str = Study.ExcludedOutcome.SCREEN_OUT
    lease_minutes: int = 10
    # Studies no participant of this one may have entered (and the reverse): their ids.
    exclude_participants_of: tuple[int, ...] = ()
    # Bonuses in the recruiter's currency: per attention check answered right, per item labelled.
    bonus_per_attention_check: Decimal = Decimal(0)
    bonus_per_item: Decimal = Decimal(0)

    @property
    def is_timed(self) -> bool:
        return self.presentation == Study.Presentation.TIMED

    @property
    def uses_lab_codes(self) -> bool:
        return self.recruitment == Study.Recruitment.LAB


def class_names(dataset: str) -> tuple[str, ...]:
    """The dataset's class names: a constant, so this host needs none of the dataset's files."""
    if dataset not in DATASETS:
        raise ValidationError(f"Unknown dataset {dataset!r}.")
    return DATASETS[dataset].classes
