"""A study's analysed labels, examples and predictions as numpy arrays, in a few queries.

The three large tables (labels, items, predictions) are read with one narrow
SELECT each. On PostgreSQL each goes through ``COPY ... TO STDOUT (FORMAT
binary)``: every column is cast to a fixed-width type and made NOT NULL, so
the rows are fixed-width records that numpy reads in one ``frombuffer``;
1,000,000 labels arrive in well under a second, where building a million
Python tuples (cursor.fetchall, let alone the ORM) takes seconds. Other
databases (the demo's SQLite) take the same SELECT through a plain cursor.

Labels are selected by the range of the study's item ids, with no join: a
study's items are made in one insert, so the range holds its items (and
rarely another study's, dropped here with the attention and practice items
and the excluded participants); joining a million labels to their items
costs PostgreSQL about a second more than the range scan.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import connection

from analysis.pseudonyms import pseudonym_of
from analysis.queries import ANALYSED_KINDS
from analysis.snapshot import read_snapshot
from analysis.statistics._types import BoolArray, FloatArray, IntArray
from attacks.models import AttackSetting, ClassifierModel, Example, Prediction
from labeling.models import Label, Participant
from study.models import CANT_TELL, Study, StudyItem

_LABEL, _ITEM = Label._meta.db_table, StudyItem._meta.db_table
_EXAMPLE, _PREDICTION = Example._meta.db_table, Prediction._meta.db_table
_MISSING = -1  # stands for NULL in the fixed-width rows

# (column name, PostgreSQL type it is cast to, its big-endian numpy type)
Columns = tuple[tuple[str, str, str], ...]
ITEM_COLUMNS: Columns = (
    ("item", "int8", ">i8"),
    ("example", "int8", ">i8"),
    ("setting", "int8", ">i8"),
    ("source", "int4", ">i4"),
    ("target", "int4", ">i4"),
)
_LABEL_COLUMNS: Columns = (
    ("item", "int8", ">i8"),
    ("participant", "int8", ">i8"),
    ("value", "int4", ">i4"),
    ("response_ms", "float8", ">f8"),
)
_PREDICTION_COLUMNS: Columns = (
    ("example", "int8", ">i8"),
    ("model", "int8", ">i8"),
    ("label", "int4", ">i4"),
)


@dataclass(frozen=True)
class StudyData:
    """Examples sorted by (setting, source class, id); labels and predictions index into them.

    Categories are the classes 0..n_classes-1 and "none / can't tell" as n_classes.
    """

    settings: tuple[AttackSetting, ...]  # by id
    models: tuple[ClassifierModel, ...]  # every model with a prediction on an example here
    example_ids: IntArray  # (I,)
    setting_index: IntArray  # (I,) into settings
    source: IntArray  # (I,)
    target: IntArray  # (I,), -1 without a target
    predictions: IntArray  # (M, I), -1 where the model has none
    label_example: IntArray  # (L,) into the examples
    label_participant: IntArray  # (L,) into the participants
    label_value: IntArray  # (L,) category
    # As the exclusion rule measures it (labeling.services.quality.is_too_fast): in
    # the browser from the image's onset, else on the server from serving the item.
    response_ms: FloatArray  # (L,)
    participant_ids: IntArray  # (P,) participants with an analysed label
    pseudonyms: tuple[str, ...]  # (P,)
    excluded: BoolArray  # (P,)
    category_names: tuple[str, ...]  # (K,)

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    @property
    def cant_tell(self) -> int:
        return self.n_categories - 1


def load_study_data(study: Study, *, include_excluded: bool) -> StudyData:
    # One snapshot: a participant who joins between the reads of participants and of
    # labels would otherwise have labels and no participant row.
    with read_snapshot():
        return _load_study_data(study, include_excluded=include_excluded)


def _load_study_data(study: Study, *, include_excluded: bool) -> StudyData:
    items = sorted_items(read_rows(*items_query(study), ITEM_COLUMNS))
    participants = _participants(study)
    dropped = [] if include_excluded else [pk for pk, (_, out) in participants.items() if out]
    labels, label_example = _kept_labels(
        read_rows(*_labels_query(items["item"]), _LABEL_COLUMNS), items["item"], dropped
    )
    predictions = read_rows(*_predictions_query(study), _PREDICTION_COLUMNS)
    settings = AttackSetting.objects.filter(pk__in=np.unique(items["setting"]).tolist())
    settings = settings.select_related("target_model").order_by("id")
    model_ids = np.unique(predictions["model"])
    models = tuple(ClassifierModel.objects.filter(pk__in=model_ids.tolist()).order_by("id"))
    participant_ids, label_participant = np.unique(labels["participant"], return_inverse=True)
    n_classes = _class_count(study, items, labels, predictions)
    return StudyData(
        settings=tuple(settings),
        models=models,
        example_ids=items["example"],
        setting_index=np.searchsorted(np.unique(items["setting"]), items["setting"]),
        source=items["source"],
        target=items["target"],
        predictions=_prediction_matrix(items["example"], predictions, model_ids),
        label_example=label_example,
        label_participant=label_participant.astype(np.int64),
        label_value=np.where(labels["value"] == CANT_TELL, n_classes, labels["value"]),
        response_ms=labels["response_ms"],
        participant_ids=participant_ids,
        pseudonyms=tuple(pseudonym_of(participants[pk][0]) for pk in participant_ids.tolist()),
        excluded=np.array([participants[pk][1] for pk in participant_ids.tolist()], dtype=bool),
        category_names=_category_names(study, n_classes),
    )


def items_query(study: Study) -> tuple[str, list[Any]]:
    sql = f"""
        SELECT CAST(si.id AS int8), CAST(e.id AS int8), CAST(e.setting_id AS int8),
               CAST(e.source_label AS int4), CAST(COALESCE(e.target_label, {_MISSING}) AS int4)
        FROM {_ITEM} si JOIN {_EXAMPLE} e ON e.id = si.example_id
        WHERE si.study_id = %s AND si.kind IN (%s, %s)"""
    return sql, [study.pk, *ANALYSED_KINDS]


def _labels_query(item_ids: IntArray) -> tuple[str, list[Any]]:
    sql = f"""
        SELECT CAST(l.item_id AS int8), CAST(l.participant_id AS int8), CAST(l.value AS int4),
               CAST(COALESCE(l.client_response_ms, l.server_response_ms) AS float8)
        FROM {_LABEL} l
        WHERE l.item_id BETWEEN %s AND %s"""
    return sql, item_range(item_ids)


def item_range(item_ids: IntArray) -> list[int]:
    """[lowest, highest] item id, for ``BETWEEN``; an empty range without items."""
    return [int(item_ids.min()), int(item_ids.max())] if item_ids.size else [0, -1]


def locate(item_ids: IntArray, wanted: IntArray) -> tuple[BoolArray, IntArray]:
    """Which of ``wanted`` are among the unique ``item_ids`` (unsorted), and their places."""
    if not item_ids.size:
        return np.zeros(wanted.size, dtype=bool), np.zeros(wanted.size, dtype=np.int64)
    low, span = int(item_ids.min()), int(item_ids.max() - item_ids.min()) + 1
    if span <= 8 * item_ids.size + 1_000_000:
        # Ids of one study's items are nearly contiguous: a table indexed by id is
        # one gather per label, several times faster than a binary search.
        table = np.full(span, -1, dtype=np.int64)
        table[item_ids - low] = np.arange(item_ids.size)
        place = table[np.clip(wanted - low, 0, span - 1)]
        found = (place >= 0) & (wanted >= low) & (wanted < low + span)
        return found, np.maximum(place, 0)
    order = np.argsort(item_ids)
    nearest = order[np.minimum(np.searchsorted(item_ids, wanted, sorter=order), order.size - 1)]
    return item_ids[nearest] == wanted, nearest.astype(np.int64)


def _kept_labels(
    labels: dict[str, npt.NDArray[Any]], item_ids: IntArray, dropped: list[int]
) -> tuple[dict[str, npt.NDArray[Any]], IntArray]:
    """The labels of the analysed items, but not of ``dropped`` participants; their examples."""
    kept, example = locate(item_ids, labels["item"])
    if dropped:
        kept &= ~np.isin(labels["participant"], dropped)
    return {name: column[kept] for name, column in labels.items()}, example[kept]


def _predictions_query(study: Study) -> tuple[str, list[Any]]:
    sql = f"""
        SELECT CAST(pr.example_id AS int8), CAST(pr.model_id AS int8), CAST(pr.label AS int4)
        FROM {_PREDICTION} pr JOIN {_ITEM} si ON si.example_id = pr.example_id
        WHERE si.study_id = %s AND si.kind IN (%s, %s)"""
    return sql, [study.pk, *ANALYSED_KINDS]


def read_rows(sql: str, params: list[Any], columns: Columns) -> dict[str, npt.NDArray[Any]]:
    """The query's rows as one native-endian array per column."""
    if connection.vendor == "postgresql":
        return _read_binary_copy(sql, params, columns)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        values = list(zip(*cursor.fetchall(), strict=True)) or [()] * len(columns)
    return {
        name: np.array(column, dtype=kind[1:])
        for (name, _, kind), column in zip(columns, values, strict=True)
    }


def _read_binary_copy(sql: str, params: list[Any], columns: Columns) -> dict[str, npt.NDArray[Any]]:
    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        statement = cursor.mogrify(sql, params).decode()
        cursor.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT binary)", buffer)
    return parse_binary_copy(buffer.getvalue(), columns)


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def parse_binary_copy(payload: bytes, columns: Columns) -> dict[str, npt.NDArray[Any]]:
    """Rows of PostgreSQL's binary COPY format whose fields are all fixed-width and NOT NULL.

    The format (PostgreSQL docs, "COPY", Binary Format): an 11-byte signature, a
    32-bit flags field, a 32-bit header-extension length and the extension; then
    per row a 16-bit field count and, per field, a 32-bit length and the value,
    all big-endian; then a 16-bit -1. psycopg2 has no binary COPY reader, and
    with fixed widths each row is one numpy record.
    """
    if not payload.startswith(_SIGNATURE):
        raise ValueError("not PostgreSQL binary COPY data")
    start = 19 + int.from_bytes(payload[15:19], "big")
    fields: list[tuple[str, str]] = [("fields", ">i2")]
    for name, _, kind in columns:
        fields += [(f"{name}_length", ">i4"), (name, kind)]
    record = np.dtype(fields)
    count = (len(payload) - start - 2) // record.itemsize
    rows = np.frombuffer(payload, dtype=record, count=count, offset=start)
    if (rows["fields"] != len(columns)).any() or payload[-2:] != b"\xff\xff":
        raise ValueError("unexpected row layout in binary COPY data")
    for name, _, kind in columns:
        if (rows[f"{name}_length"] != np.dtype(kind).itemsize).any():
            raise ValueError(f"column {name} is NULL or not {kind} in binary COPY data")
    return {name: rows[name].astype(kind[1:]) for name, _, kind in columns}


def sorted_items(items: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """Items ordered by (setting, source class, example id): groups become contiguous runs."""
    order = np.lexsort((items["example"], items["source"], items["setting"]))
    return {name: column[order] for name, column in items.items()}


def _prediction_matrix(
    example_ids: IntArray, predictions: dict[str, npt.NDArray[Any]], model_ids: IntArray
) -> IntArray:
    matrix = np.full((model_ids.size, example_ids.size), -1, dtype=np.int64)
    model_row = np.searchsorted(model_ids, predictions["model"])
    _, example = locate(example_ids, predictions["example"])  # every one is there: joined
    matrix[model_row, example] = predictions["label"]
    return matrix


def _class_count(
    study: Study,
    items: dict[str, npt.NDArray[Any]],
    labels: dict[str, npt.NDArray[Any]],
    predictions: dict[str, npt.NDArray[Any]],
) -> int:
    """One more than the largest class anyone (study, example, annotator, model) names."""
    seen = [np.array([value for value in study.allowed_values if value != CANT_TELL])]
    seen += [items["source"], items["target"], labels["value"], predictions["label"]]
    return int(max((column.max() for column in seen if column.size), default=-1)) + 1


def _category_names(study: Study, n_classes: int) -> tuple[str, ...]:
    texts = {int(choice["value"]): str(choice["text"]) for choice in study.label_choices}
    names = [texts.get(value, str(value)) for value in range(n_classes)]
    return (*names, texts.get(CANT_TELL, "none / can't tell"))


def _participants(study: Study) -> dict[int, tuple[uuid.UUID, bool]]:
    """Participant id -> (public id, excluded), for every participant of the study."""
    rows = Participant.objects.filter(study=study).values_list("id", "public_id", "excluded")
    return {pk: (public, out) for pk, public, out in rows}
