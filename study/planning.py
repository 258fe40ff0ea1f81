"""Checking a design and choosing its examples: reads only; ``study.services`` stores the plan."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError

from attacks.models import AttackSetting, Example
from study.design import SettingSample, StudyDesign, class_names
from study.models import CANT_TELL, Study, StudyItem

Kind = StudyItem.Kind

MAX_LAB_CODES = 10_000

ROLE_NAMES: dict[str, str] = {
    Kind.MAIN: "Examples under study",
    Kind.CONTROL: "Controls",
    Kind.ATTENTION: "Attention checks",
    Kind.PRACTICE: "Practice items",
}
GOLD_KINDS = (Kind.ATTENTION, Kind.PRACTICE)  # items with an expected answer


@dataclass(frozen=True)
class PlannedItem:
    example: Example
    kind: str


@dataclass(frozen=True)
class DesignPlan:
    """A checked design: the answers offered and the examples chosen, role by role."""

    label_choices: list[dict[str, object]]
    items: list[PlannedItem]


def label_choices(
    names: Sequence[str], classes: Iterable[int], *, cant_tell: bool
) -> list[dict[str, object]]:
    choices: list[dict[str, object]] = [
        {"value": index, "text": names[index]} for index in sorted(classes)
    ]
    if cant_tell:
        choices.append({"value": CANT_TELL, "text": "None / can't tell"})
    return choices


def plan_design(design: StudyDesign) -> DesignPlan:
    """Check a design and choose its examples; a ValidationError lists every problem found."""
    errors = _setting_errors(design)
    if errors:  # without one dataset and its settings, nothing else can be checked
        raise ValidationError(errors)
    names = class_names(design.samples[0].setting.dataset)
    offered = (
        tuple(range(len(names))) if design.classes is None else tuple(sorted(set(design.classes)))
    )
    errors = [*_number_errors(design), *_class_errors(design, offered, len(names))]
    if not errors:  # an unknown class or a zero count would make the picks meaningless
        items, errors = _pick_items(design, offered)
    if errors:
        raise ValidationError(errors)
    return DesignPlan(label_choices(names, offered, cant_tell=design.cant_tell), items)


def _all_samples(design: StudyDesign) -> list[SettingSample]:
    gold = [design.controls, design.attention, design.practice]
    return [*design.samples, *(sample for sample in gold if sample is not None)]


def _clean_roles(design: StudyDesign) -> list[tuple[str, SettingSample]]:
    roles = [
        (Kind.CONTROL, design.controls),
        (Kind.ATTENTION, design.attention),
        (Kind.PRACTICE, design.practice),
    ]
    return [(ROLE_NAMES[kind], sample) for kind, sample in roles if sample is not None]


def _setting_errors(design: StudyDesign) -> list[str]:
    if not design.samples:
        return ["Choose at least one attack setting and how many of its examples to use."]
    errors = []
    main_ids = [sample.setting.pk for sample in design.samples]
    if len(set(main_ids)) != len(main_ids):
        errors.append("Each attack setting can be chosen only once.")
    for role, sample in _clean_roles(design):
        if sample.setting.kind != AttackSetting.Kind.CLEAN:
            errors.append(
                f"{role} must come from a clean setting; {sample.setting} is {sample.setting.kind}."
            )
    datasets = sorted({sample.setting.dataset for sample in _all_samples(design)})
    if len(datasets) > 1:
        errors.append(
            f"All settings of a study must use one dataset; these use {', '.join(datasets)}."
        )
    return errors


def _number_errors(design: StudyDesign) -> list[str]:
    errors = []
    if not design.title.strip():
        errors.append("Give the study a title.")
    if not design.instructions.strip():
        errors.append("Write the instructions participants read.")
    for sample in _all_samples(design):
        if sample.count < 1:
            errors.append(f"{sample.setting}: the number of examples must be at least 1.")
    if design.items_per_participant < 1 or design.labels_per_item < 1:
        errors.append("Items per participant and labels per item must be at least 1.")
    errors += _attention_errors(design)
    errors += _known_answer_errors(design)
    errors += _presentation_errors(design)
    errors += _operation_errors(design)
    errors += _feasibility_errors(design)
    return errors


def _attention_errors(design: StudyDesign) -> list[str]:
    per_participant, pool = design.attention_checks_per_participant, design.attention
    if pool is None:
        if per_participant > 0:
            return ["Attention checks: choose the clean setting to draw them from."]
        return []
    if per_participant < 1:
        return [
            f"Attention checks: the pool has {pool.count} gold items but no participant gets "
            "any; set how many each participant gets, or choose no setting."
        ]
    if per_participant > pool.count:
        return [
            f"Attention checks: each participant is to get {per_participant}, but the pool has "
            f"only {pool.count} (no one sees an item twice)."
        ]
    return []


def _known_answer_errors(design: StudyDesign) -> list[str]:
    if design.tells_of_known_answers and not (
        design.attention and design.attention_checks_per_participant
    ):
        return [
            "The instructions are to say that some images have known answers, but no "
            "participant gets an attention check: choose attention checks, or untick it."
        ]
    return []


def _presentation_errors(design: StudyDesign) -> list[str]:
    if design.presentation not in Study.Presentation.values:
        return [f"Unknown presentation {design.presentation!r}."]
    if not design.is_timed:
        return []
    exposure, deadline = design.exposure_ms, design.response_deadline_ms
    if not exposure or not deadline:
        return ["Timed presentation needs an exposure time and a response deadline, in ms."]
    errors = []
    if deadline < exposure:
        errors.append(
            f"The response deadline ({deadline} ms) counts from the image's onset, so it cannot "
            f"be shorter than the exposure ({exposure} ms)."
        )
    if design.min_response_ms >= deadline:
        errors.append(
            f"Answers faster than {design.min_response_ms} ms count as too fast, but the "
            f"deadline is {deadline} ms: no answer could be both in time and not too fast."
        )
    return errors


def _operation_errors(design: StudyDesign) -> list[str]:
    errors = []
    if design.recruitment not in Study.Recruitment.values:
        errors.append(f"Unknown recruitment {design.recruitment!r}.")
    if design.excluded_outcome not in Study.ExcludedOutcome.values:
        errors.append(f"Unknown end for excluded participants {design.excluded_outcome!r}.")
    if design.withdrawal_policy not in Study.WithdrawalPolicy.values:
        errors.append(f"Unknown withdrawal policy {design.withdrawal_policy!r}.")
    if design.uses_lab_codes and not 1 <= design.lab_code_count <= MAX_LAB_CODES:
        errors.append(f"Lab recruitment needs between 1 and {MAX_LAB_CODES} lab codes.")
    if design.lease_minutes < 1:
        errors.append("An item's lease must last at least 1 minute.")
    rules = (
        design.attention_checks_per_participant,
        design.max_attention_failures,
        design.min_response_ms,
        design.max_fast_responses,
    )
    if min(rules) < 0:
        errors.append("Attention checks and exclusion rules cannot be negative.")
    return errors


def _feasibility_errors(design: StudyDesign) -> list[str]:
    analysed = sum(sample.count for sample in design.samples)
    analysed += design.controls.count if design.controls else 0
    if 0 < analysed < design.items_per_participant:
        return [
            f"Each participant is to label {design.items_per_participant} items, but the study "
            f"has only {analysed} main and control items; lower the items per participant or "
            "add examples."
        ]
    return []


def _class_errors(design: StudyDesign, offered: tuple[int, ...], class_count: int) -> list[str]:
    errors = []
    unknown = sorted(index for index in offered if not 0 <= index < class_count)
    if unknown:
        errors.append(
            f"Label choices: {unknown} are not classes of this dataset (it has {class_count})."
        )
    if not offered or len(offered) + design.cant_tell < 2:
        errors.append("Label choices: offer at least one class, and two answers in all.")
    return errors


def _pick_items(
    design: StudyDesign, offered: tuple[int, ...]
) -> tuple[list[PlannedItem], list[str]]:
    picker = _ExamplePicker()
    errors = [error for sample in design.samples for error in picker.take(sample, Kind.MAIN)]
    if design.controls:
        errors += picker.take(design.controls, Kind.CONTROL)
    # Gold items come last so that they avoid every image the study already shows.
    if design.attention:
        errors += picker.take(design.attention, Kind.ATTENTION, gold_answers=offered)
    if design.practice:
        errors += picker.take(design.practice, Kind.PRACTICE, gold_answers=offered)
    return picker.items, errors


class _ExamplePicker:
    """Takes examples role by role, in each setting's seeded order, never one twice.

    A gold (attention or practice) item also needs a source image that the study
    shows nowhere else: practice feedback on a clean 7 would tell the participant the
    answer for the attacked 7 they meet later. Its class must be among the answers.
    """

    def __init__(self) -> None:
        self.items: list[PlannedItem] = []
        self._example_ids: set[int] = set()
        self._sources: set[tuple[str, int]] = set()  # (split, source index) of images taken

    def take(
        self, sample: SettingSample, kind: str, *, gold_answers: tuple[int, ...] | None = None
    ) -> list[str]:
        candidates = sample.setting.examples.exclude(pk__in=self._example_ids)
        if gold_answers is not None:
            split = sample.setting.source_split
            candidates = candidates.filter(source_label__in=gold_answers).exclude(
                source_index__in=[index for taken, index in self._sources if taken == split]
            )
        examples = list(candidates.order_by("position")[: sample.count])
        if len(examples) < sample.count:
            return [_shortfall(sample, kind, candidates.count(), gold=gold_answers is not None)]
        for example in examples:
            self.items.append(PlannedItem(example, kind))
            self._example_ids.add(example.pk)
            if example.source_index is not None:
                self._sources.add((sample.setting.source_split, example.source_index))
        return []


def _shortfall(sample: SettingSample, kind: str, available: int, *, gold: bool) -> str:
    role, setting = ROLE_NAMES[kind], sample.setting
    if gold:
        return (
            f"{role}: {setting} has {available} images usable as gold items (not already in "
            f"the study, their source image shown nowhere else in it, their class among the "
            f"answers); asked for {sample.count}."
        )
    return f"{role}: {setting} has {available} examples available; asked for {sample.count}."
