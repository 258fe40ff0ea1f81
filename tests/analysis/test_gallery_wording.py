"""The gallery's words: "2 votes for 3, 1 for 5", classes named as the study's answers name
them, and a majority that rests on a single vote marked as such."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import Client

from attacks.models import ClassifierModel
from labeling import services
from labeling.models import Participant
from study.models import Study, StudyItem


def label(participant: Participant, values: dict[int, int]) -> None:
    """Answer every trial, each item with ``values[item id]``."""
    while (assignment := services.next_assignment(participant)) is not None:
        value = values[assignment.item_id]
        services.submit_label(participant, assignment.public_id, value, uuid.uuid4(), 900.0)


def items_of(study: Study) -> list[StudyItem]:
    return list(StudyItem.objects.filter(study=study).select_related("example").order_by("id"))


def card(client: Client, study: Study, item: StudyItem) -> str:
    html = client.get(f"/researcher/studies/{study.pk}/gallery/").content.decode()
    found = re.search(rf'data-example="{item.example_id}"(.*?)</div>\s*</div>', html, re.S)
    assert found is not None
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", "", found.group(1)))  # the text read


@pytest.fixture
def voted(make_study) -> Study:
    """Two items, k = 3, three participants: the first item 2 : 1, the second 1 : 1 : 1."""
    study = make_study(count=2, labels_per_item=3, items_per_participant=2)
    first, second = items_of(study)
    source_1, source_2 = first.example.source_label, second.example.source_label
    votes = {  # per participant: item -> answer
        0: {first.pk: source_1, second.pk: source_2},
        1: {first.pk: source_1, second.pk: (source_2 + 1) % 10},
        2: {first.pk: (source_1 + 1) % 10, second.pk: (source_2 + 2) % 10},
    }
    for person in range(3):
        label(services.join_study(study), votes[person])
    return study


def test_votes_read_as_a_sentence(researcher_client: Client, voted: Study) -> None:
    first, second = items_of(voted)
    source_1, source_2 = first.example.source_label, second.example.source_label

    shown = card(researcher_client, voted, first)
    assert f"2 votes for {source_1}, 1 for {(source_1 + 1) % 10}" in shown
    assert f"majority: {source_1} (2 of 3 votes)" in shown
    assert "\u00d7" not in shown

    tied = card(researcher_client, voted, second)
    assert f"1 vote for {source_2}, 1 for {(source_2 + 1) % 10}, 1 for" in tied
    assert "majority: none (tie)" in tied


def test_class_names_from_the_studys_answers(
    researcher_client: Client, trained_model: ClassifierModel, voted: Study
) -> None:
    """(The model exists before the study's examples are made: each has its prediction.)"""
    names = {value: f"class-{value}" for value in range(10)}
    choices = [{"value": value, "text": text} for value, text in names.items()]
    Study.objects.filter(pk=voted.pk).update(label_choices=choices)
    first, _ = items_of(voted)
    source = first.example.source_label
    other = (source + 1) % 10

    shown = card(researcher_client, voted, first)

    assert f"2 votes for class-{source} ({source}), 1 for class-{other} ({other})" in shown
    assert f"source class-{source} ({source})" in shown
    assert re.search(rf"{trained_model.name} predicts class-\d \(\d\)", shown)


def test_a_majority_of_one_vote_is_marked(researcher_client: Client, make_study) -> None:
    study = make_study(count=1, labels_per_item=3, items_per_participant=1)
    (item,) = items_of(study)
    label(services.join_study(study), {item.pk: item.example.source_label})

    shown = card(researcher_client, study, item)

    assert f"1 vote for {item.example.source_label}" in shown
    assert f"majority: {item.example.source_label} (1 vote only)" in shown


def test_an_unlabelled_example_says_so(researcher_client: Client, make_study) -> None:
    study = make_study(count=1, labels_per_item=3, items_per_participant=1)
    (item,) = items_of(study)

    shown = card(researcher_client, study, item)

    assert "no vote yet" in shown
    assert "majority: none (unlabelled)" in shown
