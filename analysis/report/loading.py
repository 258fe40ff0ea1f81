"""A study's analysed labels, examples and predictions as numpy arrays, in a few queries.

The three large tables (labels, items, predictions) are read with one narrow SELECT
each, through the exports' Arrow path (analysis.reading): one snapshot, and columns
that become numpy arrays without a Python object per row.

Labels are selected by the range of the study's item ids, with no join: a study's
items are made in one insert, so the range holds its items (and rarely another
study's, dropped here with the attention and practice items and the excluded
participants); joining a million labels to their items costs PostgreSQL about a
second more than the range scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from analysis.pseudonyms import pseudonyms_of
from analysis.reading import Snapshot, read_snapshot, read_table, sql_values
from analysis.statistics._types import BoolArray, FloatArray, IntArray
from attacks.models import AttackSetting, ClassifierModel, Example, Prediction
from labeling.models import Label, Participant
from study.models import ANALYSED_ITEM_KINDS, CANT_TELL, Study, StudyItem

_LABEL, _ITEM = Label._meta.db_table, StudyItem._meta.db_table
_PARTICIPANT = Participant._meta.db_table
_EXAMPLE, _PREDICTION = Example._meta.db_table, Prediction._meta.db_table
_MISSING = -1  # stands for NULL: numpy's integers have none
ANALYSED_SQL = sql_values(ANALYSED_ITEM_KINDS)

# (column name, its type)
Columns = tuple[tuple[str, pa.DataType], ...]
ITEM_COLUMNS: Columns = (
    ("item", pa.int64()),
    ("example", pa.int64()),
    ("setting", pa.int64()),
    ("source", pa.int64()),
    ("target", pa.int64()),
)
_LABEL_COLUMNS: Columns = (
    ("item", pa.int64()),
    ("participant", pa.int64()),
    ("value", pa.int64()),
    ("response_ms", pa.float64()),
    ("exposure_ms", pa.float64()),  # _MISSING where the page measured none
)
_PREDICTION_COLUMNS: Columns = (
    ("example", pa.int64()),
    ("model", pa.int64()),
    ("label", pa.int64()),
)
_PARTICIPANT_COLUMNS: Columns = (
    ("participant", pa.int64()),
    ("public_id", pa.string()),
    ("excluded", pa.bool_()),
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
    # Timed studies, with a tolerance asked for: the trials left out because their
    # measured exposure missed the study's target by more than it (or was not measured).
    exposure_missed: int = 0

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    @property
    def cant_tell(self) -> int:
        return self.n_categories - 1


def load_study_data(
    study: Study, *, include_excluded: bool, exposure_within_ms: int | None = None
) -> StudyData:
    """``exposure_within_ms``: in a timed study, leave out the trials whose measured
    exposure is further than this from the study's exposure, or was not measured."""
    # One snapshot: a participant who joins between the reads of participants and of
    # labels would otherwise have labels and no participant row.
    with read_snapshot() as snapshot:
        within = exposure_within_ms
        return _load_study_data(
            study, snapshot, include_excluded=include_excluded, exposure_within_ms=within
        )


def _load_study_data(
    study: Study, snapshot: Snapshot, *, include_excluded: bool, exposure_within_ms: int | None
) -> StudyData:
    items = sorted_items(read_rows(snapshot, items_query(study), ITEM_COLUMNS))
    participants = _participants(snapshot, study)
    dropped = [] if include_excluded else [pk for pk, (_, out) in participants.items() if out]
    labels, label_example = _kept_labels(
        read_rows(snapshot, _labels_query(items["item"]), _LABEL_COLUMNS), items["item"], dropped
    )
    missed = _missed_exposure(study, labels, exposure_within_ms)
    if missed.any():
        labels = {name: column[~missed] for name, column in labels.items()}
        label_example = label_example[~missed]
    predictions = read_rows(snapshot, _predictions_query(study), _PREDICTION_COLUMNS)
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
        pseudonyms=tuple(pseudonyms_of(participants[pk][0] for pk in participant_ids.tolist())),
        excluded=np.array([participants[pk][1] for pk in participant_ids.tolist()], dtype=bool),
        category_names=_category_names(study, n_classes),
        exposure_missed=int(missed.sum()),
    )


def _missed_exposure(
    study: Study, labels: dict[str, npt.NDArray[Any]], within_ms: int | None
) -> npt.NDArray[np.bool_]:
    """Which labels' trials missed the timed study's exposure by more than ``within_ms``:
    shown too long, or cut short before the answer came.

    An answer given while the image showed ends it at the next frame, by design: such a
    trial must have shown its image until the answer, not for the whole exposure.
    """
    exposure_ms = labels["exposure_ms"]
    if within_ms is None or not study.exposure_ms:
        return np.zeros(exposure_ms.size, dtype=bool)
    target = float(study.exposure_ms)
    shown_until = np.fmin(target, labels["response_ms"])  # NaN response: the exposure
    unmeasured = exposure_ms == _MISSING
    too_short = exposure_ms < shown_until - within_ms
    return unmeasured | too_short | (exposure_ms > target + within_ms)


def items_query(study: Study) -> str:
    return f"""
        SELECT si.id, e.id, e.setting_id, e.source_label, COALESCE(e.target_label, {_MISSING})
        FROM {_ITEM} si JOIN {_EXAMPLE} e ON e.id = si.example_id
        WHERE si.study_id = {int(study.pk)} AND si.kind IN {ANALYSED_SQL}"""


def _labels_query(item_ids: IntArray) -> str:
    low, high = item_range(item_ids)
    return f"""
        SELECT l.item_id, l.participant_id, l.value,
               COALESCE(l.client_response_ms, l.server_response_ms),
               COALESCE(l.exposure_ms, {_MISSING})
        FROM {_LABEL} l
        WHERE l.item_id BETWEEN {low} AND {high}"""


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


def _predictions_query(study: Study) -> str:
    return f"""
        SELECT pr.example_id, pr.model_id, pr.label
        FROM {_PREDICTION} pr JOIN {_ITEM} si ON si.example_id = pr.example_id
        WHERE si.study_id = {int(study.pk)} AND si.kind IN {ANALYSED_SQL}"""


def read_rows(snapshot: Snapshot, sql: str, columns: Columns) -> dict[str, npt.NDArray[Any]]:
    """The query's rows as one array per column (none of them NULL)."""
    table = read_table(snapshot, sql, pa.schema(columns))
    return {name: table.column(name).to_numpy() for name, _ in columns}


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


def _participants(snapshot: Snapshot, study: Study) -> dict[int, tuple[str, bool]]:
    """Participant id -> (public id, excluded), for every participant of the study."""
    sql = f"""SELECT id, CAST(public_id AS TEXT), excluded FROM {_PARTICIPANT}
        WHERE study_id = {int(study.pk)}"""
    rows = read_rows(snapshot, sql, _PARTICIPANT_COLUMNS)
    return {
        pk: (public, out)
        for pk, public, out in zip(
            rows["participant"].tolist(),
            rows["public_id"].tolist(),
            rows["excluded"].tolist(),
            strict=True,
        )
    }
