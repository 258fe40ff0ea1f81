"""The study designer's service: exactly the items asked for, or nothing at all."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from django.core.exceptions import ValidationError

from attacks.models import AttackSetting
from labeling.models import Participant
from study import services
from study.design import SettingSample, StudyDesign
from study.models import CANT_TELL, LabCode, Study, StudyItem
from study.queries import design_of

Kind = StudyItem.Kind


def items_by_kind(study: Study) -> dict[str, list[StudyItem]]:
    grouped: dict[str, list[StudyItem]] = {kind: [] for kind in Kind.values}
    for item in study.items.select_related("example__setting"):
        grouped[item.kind].append(item)
    return grouped


def test_a_design_becomes_a_draft_with_exactly_the_items_asked_for(
    researcher, full_design, settings_of_a_study
) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)

    items = items_by_kind(study)
    assert study.status == Study.Status.DRAFT
    assert Counter(item.example.setting.name for item in items[Kind.MAIN]) == {"pgd": 10, "nn": 6}
    assert {kind: len(group) for kind, group in items.items()} == {
        Kind.MAIN: 16,
        Kind.CONTROL: 4,
        Kind.ATTENTION: 5,
        Kind.PRACTICE: 3,
    }
    # Each setting's first examples in its seeded order.
    assert sorted(item.example.position for item in items[Kind.CONTROL]) == [0, 1, 2, 3]
    assert sorted(item.shuffle_key for item in study.items.all()) == list(range(28))
    assert study.attention_checks_per_participant == 2
    assert study.lab_codes.count() == 25


def test_gold_items_expect_the_clean_class_and_the_others_expect_nothing(
    researcher, full_design
) -> None:
    items = items_by_kind(services.create_draft_study(owner=researcher, design=full_design))

    for kind in (Kind.ATTENTION, Kind.PRACTICE):
        assert all(item.expected_label == item.example.source_label for item in items[kind])
        assert all(item.example.setting.kind == AttackSetting.Kind.CLEAN for item in items[kind])
    for kind in (Kind.MAIN, Kind.CONTROL):
        assert all(item.expected_label is None for item in items[kind])


def test_gold_items_never_show_a_source_image_the_study_shows_elsewhere(
    researcher, full_design
) -> None:
    items = items_by_kind(services.create_draft_study(owner=researcher, design=full_design))

    sources = {kind: {item.example.source_index for item in group} for kind, group in items.items()}
    shown = sources[Kind.MAIN] | sources[Kind.CONTROL]
    assert sources[Kind.CONTROL] <= sources[Kind.MAIN]  # controls: clean twins are allowed
    assert not sources[Kind.ATTENTION] & shown
    assert not sources[Kind.PRACTICE] & (shown | sources[Kind.ATTENTION])
    # And their answer must be offered: class 7 is left out of this design.
    assert all(item.expected_label != 7 for item in items[Kind.ATTENTION] + items[Kind.PRACTICE])


def test_strata_are_the_pairs_of_setting_and_source_class(researcher, full_design) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)

    pairs_of_stratum: dict[int, set[tuple[int, int]]] = {}
    for item in study.items.select_related("example"):
        pair = (item.example.setting_id, item.example.source_label)
        pairs_of_stratum.setdefault(item.stratum, set()).add(pair)
    assert all(len(pairs) == 1 for pairs in pairs_of_stratum.values())
    all_pairs = [next(iter(pairs)) for pairs in pairs_of_stratum.values()]
    assert len(set(all_pairs)) == len(all_pairs)  # one stratum per pair


def test_label_choices_are_the_classes_chosen(researcher, full_design) -> None:
    without_seven = services.create_draft_study(owner=researcher, design=full_design)
    everything = services.create_draft_study(
        owner=researcher, design=dataclasses.replace(full_design, classes=None, cant_tell=True)
    )

    assert without_seven.label_choices == [
        {"value": value, "text": str(value)} for value in (0, 1, 2, 3, 4, 5, 6, 8, 9)
    ]
    assert [choice["value"] for choice in everything.label_choices] == [*range(10), CANT_TELL]
    assert everything.label_choices[-1]["text"] == "None / can't tell"


def test_the_other_design_fields_are_stored(researcher, full_design) -> None:
    timed = dataclasses.replace(
        full_design,
        presentation=Study.Presentation.TIMED,
        exposure_ms=200,
        response_deadline_ms=3000,
        min_response_ms=150,
        max_fast_responses=5,
        lease_minutes=20,
    )
    study = services.create_draft_study(owner=researcher, design=timed)

    assert (study.presentation, study.exposure_ms, study.response_deadline_ms) == (
        "timed",
        200,
        3000,
    )
    assert (study.min_response_ms, study.max_fast_responses, study.lease_minutes) == (150, 5, 20)
    assert (study.max_attention_failures, study.seed, study.recruitment) == (1, 7, "lab")
    assert study.consent_text == "You agree to take part."


def test_unlimited_presentation_keeps_no_stale_times(researcher, full_design) -> None:
    design = dataclasses.replace(full_design, exposure_ms=200, response_deadline_ms=900)
    study = services.create_draft_study(owner=researcher, design=design)
    assert (study.exposure_ms, study.response_deadline_ms) == (None, None)


def test_lab_codes_are_only_made_for_lab_recruitment(researcher, full_design) -> None:
    design = dataclasses.replace(full_design, recruitment="prolific")
    assert not services.create_draft_study(owner=researcher, design=design).lab_codes.exists()


def test_the_design_read_back_is_the_design(researcher, full_design) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)
    assert design_of(study) == full_design


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"samples": ()}, "Choose at least one attack setting"),
        ({"samples": (("pgd", 11),)}, "pgd has 10 examples available; asked for 11"),
        ({"samples": (("pgd", 0),)}, "pgd: the number of examples must be at least 1"),
        ({"samples": (("pgd", 2), ("pgd", 3))}, "can be chosen only once"),
        ({"controls": ("pgd", 2)}, "Controls must come from a clean setting; pgd is sensitivity"),
        ({"attention": ("nn", 2)}, "Attention checks must come from a clean setting"),
        ({"practice": ("pgd", 1)}, "Practice items must come from a clean setting"),
        ({"controls": ("fashion", 2)}, "must use one dataset; these use fashion_mnist, mnist"),
        ({"attention_checks_per_participant": 6}, "each participant is to get 6, but the pool"),
        ({"attention_checks_per_participant": 0}, "but no participant gets any"),
        ({"attention": None}, "Attention checks: choose the clean setting"),
        ({"attention": ("clean", 30)}, "usable as gold items"),
        ({"practice": ("clean", 40)}, "Practice items: clean has"),
        ({"presentation": "timed"}, "needs an exposure time and a response deadline"),
        (
            {"presentation": "timed", "exposure_ms": 500, "response_deadline_ms": 300},
            "cannot be shorter than the exposure (500 ms)",
        ),
        (
            {"presentation": "timed", "exposure_ms": 100, "response_deadline_ms": 200},
            "no answer could be both in time and not too fast",
        ),
        ({"items_per_participant": 21}, "to label 21 items, but the study has only 20"),
        ({"labels_per_item": 0}, "must be at least 1"),
        ({"classes": (0, 12)}, "[12] are not classes of this dataset"),
        ({"classes": (3,)}, "offer at least one class, and two answers in all"),
        ({"lab_code_count": 0}, "Lab recruitment needs between 1 and"),
        ({"lease_minutes": 0}, "at least 1 minute"),
        ({"title": "  "}, "Give the study a title"),
    ],
)
def test_a_refused_design_changes_nothing(
    researcher, full_design, settings_of_a_study, make_setting, changes, message
) -> None:
    named = {**settings_of_a_study, "fashion": make_setting("fashion", "clean", [1, 2, 3])}
    named["fashion"].dataset = "fashion_mnist"
    named["fashion"].save(update_fields=["dataset"])

    def resolve(value):
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            return SettingSample(named[value[0]], value[1])
        if isinstance(value, tuple) and value and isinstance(value[0], tuple):
            return tuple(resolve(part) for part in value)
        return value

    design = dataclasses.replace(full_design, **{k: resolve(v) for k, v in changes.items()})

    with pytest.raises(ValidationError) as refused:
        services.create_draft_study(owner=researcher, design=design)

    assert any(message in text for text in refused.value.messages), refused.value.messages
    assert not Study.objects.exists()
    assert not StudyItem.objects.exists()
    assert not LabCode.objects.exists()


def test_every_problem_is_reported_at_once(researcher, full_design) -> None:
    design = dataclasses.replace(full_design, lease_minutes=0, lab_code_count=0, title="")
    with pytest.raises(ValidationError) as refused:
        services.create_draft_study(owner=researcher, design=design)
    assert len(refused.value.messages) == 3


def test_the_legacy_create_study_still_makes_a_live_study(make_study) -> None:
    study = make_study(count=3, labels_per_item=2, items_per_participant=3)

    assert study.status == Study.Status.LIVE
    assert list(study.items.values_list("kind", flat=True)) == [Kind.MAIN] * 3
    assert [choice["value"] for choice in study.label_choices] == [*range(10), CANT_TELL]


# Lab codes.


def test_lab_codes_are_unique_and_easy_to_type(researcher, full_design) -> None:
    study = services.create_draft_study(
        owner=researcher, design=dataclasses.replace(full_design, lab_code_count=500)
    )
    services.add_lab_codes(study, 300, by=researcher)

    codes = list(study.lab_codes.values_list("code", flat=True))
    assert len(codes) == len(set(codes)) == 800
    assert all(len(code) == 8 and set(code) <= set(services.LAB_CODE_ALPHABET) for code in codes)
    assert not set("01IO") & set("".join(codes))


def test_lab_codes_are_refused_outside_open_lab_studies(researcher, full_design) -> None:
    prolific = services.create_draft_study(
        owner=researcher, design=dataclasses.replace(full_design, recruitment="prolific")
    )
    lab = services.create_draft_study(owner=researcher, design=full_design)
    for status in ("live", "closed"):
        services.change_status(lab, status, by=researcher)

    with pytest.raises(ValidationError, match="does not recruit with lab codes"):
        services.add_lab_codes(prolific, 5, by=researcher)
    with pytest.raises(ValidationError, match="closed"):
        services.add_lab_codes(lab, 5, by=researcher)
    assert lab.lab_codes.count() == 25
    assert not prolific.lab_codes.exists()


# Status.

ALLOWED = {("draft", "live"), ("live", "paused"), ("paused", "live"), ("live", "closed")}
ALLOWED |= {("paused", "closed")}
ALL_PAIRS = [(old, new) for old in Study.Status.values for new in Study.Status.values]


@pytest.mark.parametrize(("old", "new"), sorted(ALLOWED))
def test_allowed_status_changes(researcher, full_design, old, new) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)
    Study.objects.filter(pk=study.pk).update(status=old)
    study.refresh_from_db()

    services.change_status(study, new, by=researcher)

    study.refresh_from_db()
    assert study.status == new


@pytest.mark.parametrize(("old", "new"), sorted(set(ALL_PAIRS) - ALLOWED))
def test_refused_status_changes(researcher, full_design, old, new) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)
    Study.objects.filter(pk=study.pk).update(status=old)
    study.refresh_from_db()

    with pytest.raises(ValidationError, match=f"A {old} study cannot become {new}"):
        services.change_status(study, new, by=researcher)

    study.refresh_from_db()
    assert study.status == old


def test_a_status_change_from_a_stale_page_is_refused(researcher, full_design) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)
    stale = Study.objects.get(pk=study.pk)
    services.change_status(study, "live", by=researcher)

    with pytest.raises(ValidationError, match="changed meanwhile"):
        services.change_status(stale, "live", by=researcher)  # draft -> live again


def test_only_the_owner_changes_a_study(researcher, outsider, full_design) -> None:
    from django.core.exceptions import PermissionDenied

    study = services.create_draft_study(owner=researcher, design=full_design)
    with pytest.raises(PermissionDenied):
        services.change_status(study, "live", by=outsider)
    with pytest.raises(PermissionDenied):
        services.add_lab_codes(study, 1, by=outsider)
    study.refresh_from_db()
    assert study.status == "draft"


# Editing a draft.


def test_a_draft_gets_a_new_design_and_keeps_its_links(
    researcher, full_design, settings_of_a_study
) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)
    token, old_codes = study.join_token, set(study.lab_codes.values_list("code", flat=True))
    smaller = StudyDesign(
        title="Smaller",
        instructions="Which digit?",
        samples=(SettingSample(settings_of_a_study["nn"], 4),),
        items_per_participant=4,
        labels_per_item=5,
        recruitment="lab",
        lab_code_count=3,
    )

    services.replace_draft_design(study, smaller, by=researcher)

    study.refresh_from_db()
    assert (study.title, study.join_token, study.labels_per_item) == ("Smaller", token, 5)
    assert study.items.count() == 4
    assert set(study.items.values_list("kind", flat=True)) == {Kind.MAIN}
    new_codes = set(study.lab_codes.values_list("code", flat=True))
    assert len(new_codes) == 3
    assert not new_codes & old_codes
    assert design_of(study) == dataclasses.replace(smaller, classes=tuple(range(10)))


def test_a_live_study_keeps_its_design(researcher, full_design) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)
    services.change_status(study, "live", by=researcher)
    changed = dataclasses.replace(full_design, title="Changed")

    with pytest.raises(ValidationError, match="Only a draft's design can change"):
        services.replace_draft_design(study, changed, by=researcher)

    study.refresh_from_db()
    assert study.title == "Which digit?"
    assert study.items.count() == 28


def test_a_draft_with_participants_keeps_its_items(researcher, full_design) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)
    Participant.objects.create(study=study)
    item_ids = set(study.items.values_list("id", flat=True))

    with pytest.raises(ValidationError, match="already has 1 participant"):
        services.replace_draft_design(study, full_design, by=researcher)

    assert set(study.items.values_list("id", flat=True)) == item_ids
