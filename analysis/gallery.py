"""The example gallery: a study's examples with their votes, filtered and paginated.

Votes are counted in SQL (GROUP BY item and answer: exact, and a few rows per
example instead of one per label), over the range of the study's item ids as
the report reads labels; the majority and the outcome of every example are then
a few numpy operations, and only the page's examples are fetched whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from django.core.paginator import Page, Paginator

from analysis.reading import read_snapshot
from analysis.report.loading import (
    ITEM_COLUMNS,
    Columns,
    item_range,
    items_query,
    locate,
    read_rows,
    sorted_items,
)
from analysis.statistics import majority_votes
from analysis.statistics._types import BoolArray, IntArray
from attacks.models import Example
from labeling.models import Label, Participant
from study.models import CANT_TELL, Study

EXAMPLES_PER_PAGE = 24
# outcome -> what it means; an example reaching its target has changed too.
OUTCOMES = {
    "changed": "the majority differs from the source label",
    "unchanged": "the majority is the source label",
    "tie": "the vote is tied",
    "target": "the majority is the target label",
}
_VOTE_COLUMNS: Columns = (("item", pa.int64()), ("value", pa.int64()), ("n", pa.int64()))


@dataclass(frozen=True)
class GalleryFilters:
    setting_id: int | None = None
    source_class: int | None = None
    outcome: str | None = None  # a key of OUTCOMES
    include_excluded: bool = False


@dataclass(frozen=True)
class GalleryExample:
    example: Example
    votes: list[tuple[str, int]]  # (answer, labels), most labels first
    majority: str | None  # None for a tie or no label
    outcome: str  # a key of OUTCOMES, or "unlabelled"
    predictions: list[tuple[str, str]]  # (model name, predicted class named as the answers)
    source: str  # the source class, named as the study's answers name it
    target: str | None

    @property
    def votes_text(self) -> str:
        """ "2 votes for 3, 1 for 5": the unit once, then each answer's count."""
        if not self.votes:
            return "no vote yet"
        (answer, count), *others = self.votes
        first = f"{count} vote{'s' if count != 1 else ''} for {answer}"
        return ", ".join([first, *(f"{n} for {other}" for other, n in others)])

    @property
    def majority_text(self) -> str:
        """The majority and what it rests on; one vote is marked, since it is no vote at all.
        A tie or no vote is "none" (the outcome beside it says which)."""
        if self.majority is None:
            return "none"
        top = self.votes[0][1]
        if top == 1:
            return f"{self.majority} (1 vote only)"
        return f"{self.majority} ({top} of {sum(n for _, n in self.votes)} votes)"


@dataclass(frozen=True)
class _Votes:
    example_ids: IntArray
    setting_ids: IntArray
    source: IntArray
    target: IntArray  # -1 without a target
    counts: IntArray  # (I, classes + 1), "can't tell" last


@dataclass(frozen=True)
class GalleryPage:
    page: Page  # of positions; for the page links
    examples: list[GalleryExample]


def gallery_page(
    study: Study, filters: GalleryFilters, page_number: str | int | None
) -> GalleryPage:
    """A page of the examples that pass ``filters``, in the report's order."""
    votes = _votes(study, filters.include_excluded)
    found = _outcomes(votes)
    chosen = np.flatnonzero(_selected(votes, found, filters))
    page = Paginator(chosen.tolist(), EXAMPLES_PER_PAGE).get_page(page_number)
    return GalleryPage(page, _gallery_examples(study, votes, found, list(page.object_list)))


def _votes(study: Study, include_excluded: bool) -> _Votes:
    with read_snapshot() as snapshot:
        items = sorted_items(read_rows(snapshot, items_query(study), ITEM_COLUMNS))
        votes_query = _votes_query(study, items["item"], include_excluded)
        rows = read_rows(snapshot, votes_query, _VOTE_COLUMNS)
    kept, example = locate(items["item"], rows["item"])
    answers = [items["source"], items["target"], rows["value"], np.array([9])]
    classes = int(max(column.max() for column in answers if column.size)) + 1
    category = np.where(rows["value"] == CANT_TELL, classes, rows["value"])
    counts = np.zeros((items["item"].size, classes + 1), dtype=np.int64)
    np.add.at(counts, (example[kept], category[kept]), rows["n"][kept])
    return _Votes(items["example"], items["setting"], items["source"], items["target"], counts)


def _votes_query(study: Study, item_ids: IntArray, include_excluded: bool) -> str:
    """Labels per (item, answer) over the study's item range; other items are dropped later."""
    low, high = item_range(item_ids)
    leave_out = (
        ""
        if include_excluded
        else (
            f"AND l.participant_id NOT IN (SELECT id FROM {Participant._meta.db_table} "
            f"WHERE study_id = {int(study.pk)} AND excluded)"
        )
    )
    return f"""
        SELECT l.item_id, l.value, COUNT(*)
        FROM {Label._meta.db_table} l
        WHERE l.item_id BETWEEN {low} AND {high} {leave_out}
        GROUP BY l.item_id, l.value"""


def _outcomes(votes: _Votes) -> dict[str, BoolArray]:
    majority = majority_votes(votes.counts)
    judged = majority.labels >= 0
    return {
        "changed": judged & (majority.labels != votes.source),
        "unchanged": judged & (majority.labels == votes.source),
        "tie": majority.tied,
        "target": judged & (majority.labels == votes.target),
    }


def _selected(votes: _Votes, found: dict[str, BoolArray], filters: GalleryFilters) -> BoolArray:
    keep = np.ones(votes.example_ids.size, dtype=bool)
    if filters.setting_id is not None:
        keep &= votes.setting_ids == filters.setting_id
    if filters.source_class is not None:
        keep &= votes.source == filters.source_class
    if filters.outcome is not None:
        keep &= found[filters.outcome]
    return keep


def _gallery_examples(
    study: Study, votes: _Votes, found: dict[str, BoolArray], chosen: list[int]
) -> list[GalleryExample]:
    ids = [int(votes.example_ids[index]) for index in chosen]
    examples = Example.objects.select_related("setting").prefetch_related("predictions__model")
    by_id = examples.in_bulk(ids)
    names = _answer_names(study, votes.counts.shape[1] - 1)
    return [
        _gallery_example(by_id[example_id], votes.counts[index], names, _outcome(found, index))
        for example_id, index in zip(ids, chosen, strict=True)
    ]


def _outcome(found: dict[str, BoolArray], index: int) -> str:
    # The most specific first: reaching the target is also a change.
    return next(
        (name for name in ("target", "changed", "unchanged", "tie") if found[name][index]),
        "unlabelled",
    )


def _gallery_example(
    example: Example, counts: IntArray, names: list[str], outcome: str
) -> GalleryExample:
    votes = sorted(
        ((names[k], int(n)) for k, n in enumerate(counts) if n), key=lambda vote: -vote[1]
    )
    majority = int(majority_votes(counts).labels)
    predictions = sorted(
        (prediction.model.name, _class_name(names, prediction.label))
        for prediction in example.predictions.all()
    )
    target = example.target_label
    return GalleryExample(
        example,
        votes,
        names[majority] if majority >= 0 else None,
        outcome,
        predictions,
        source=names[example.source_label],
        target=None if target is None else names[target],
    )


def _answer_names(study: Study, classes: int) -> list[str]:
    """Each class as the study's answers name it ("cat (3)"; a digit is its own name), then
    "none / can't tell"; a class the answers leave out by its number."""
    texts = {int(choice["value"]): str(choice["text"]) for choice in study.label_choices}
    return [_named(value, texts.get(value)) for value in range(classes)] + [
        texts.get(CANT_TELL, "none / can't tell")
    ]


def _class_name(names: list[str], value: int) -> str:
    # A model may predict a class that no answer, source or target reaches ("can't tell" last).
    return names[value] if 0 <= value < len(names) - 1 else str(value)


def _named(value: int, text: str | None) -> str:
    return str(value) if text is None or text == str(value) else f"{text} ({value})"
