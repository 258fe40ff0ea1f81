"""The three tables of a study's export: one SQL statement each, the same text for
PostgreSQL and SQLite, and the few columns finished in Arrow (pseudonyms, majorities,
class names).

Counts, votes and medians are computed here, when exported, from the labels
themselves. Only main and control items are exported; excluded participants' labels
and rows are left out unless ``include_excluded``. SQL is built from integers and the
models' table names only (no user text), so it needs no parameters, which the
database drivers spell differently; class names, which are user text (a registered
dataset's folder names), are put beside their indices in Arrow instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from django.core.exceptions import ValidationError

from analysis.pseudonyms import pseudonyms_of
from analysis.reading import Snapshot, json_text, sql_values
from attacks.models import AttackSetting, ClassifierModel, Example, Prediction
from labeling.models import Label, Participant
from study.design import class_names
from study.models import ANALYSED_ITEM_KINDS, CANT_TELL, Study, StudyItem

LABEL = Label._meta.db_table
ITEM = StudyItem._meta.db_table
EXAMPLE = Example._meta.db_table
SETTING = AttackSetting._meta.db_table
PARTICIPANT = Participant._meta.db_table
PREDICTION = Prediction._meta.db_table

INT, FLOAT, BOOL, STR = pa.int64(), pa.float64(), pa.bool_(), pa.string()
TIME = pa.timestamp("us", tz="UTC")
STRINGS = pa.list_(pa.string())
# The imagefolder export reads each example's stored image name, not exported.
STORED_IMAGE = "stored_image"


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    sql: str


@dataclass(frozen=True)
class Table:
    """A table's statement, the schema it is read in, and what makes each read batch an
    exported one (``finish``), whose schema is ``schema``."""

    name: str
    sql: str
    read_schema: pa.Schema
    schema: pa.Schema
    finish: Callable[[pa.RecordBatch], pa.RecordBatch]

    def batches(self, snapshot: Snapshot) -> Iterator[pa.RecordBatch]:
        for batch in snapshot.batches(self.sql, self.read_schema):
            yield self.finish(batch)


def _schema(columns: tuple[Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(column.name, column.type) for column in columns])


def _select(columns: tuple[Column, ...]) -> str:
    return ",\n  ".join(column.sql for column in columns)


ANALYSED_SQL = sql_values(ANALYSED_ITEM_KINDS)


def _analysed_items(study: Study) -> str:
    return f"i.study_id = {int(study.pk)} AND i.kind IN {ANALYSED_SQL}"


def kept_sql(include_excluded: bool) -> str:
    return "" if include_excluded else "AND NOT p.excluded"


def _pseudonymised(batch: pa.RecordBatch, at: int) -> pa.RecordBatch:
    """The participant column (their public id as read) as their pseudonym: computed
    once per participant of the batch."""
    encoded = pc.dictionary_encode(batch.column(at))
    names = pa.array(pseudonyms_of(encoded.dictionary.to_pylist()), STR)
    return batch.set_column(at, batch.schema.field(at), names.take(encoded.indices))


# ---- class names beside class indices ----

CANT_TELL_NAME = "none / can't tell"  # where a study's answers do not name it


@dataclass(frozen=True)
class ClassNames:
    """The name of each class index of a study's dataset, and of "none / can't tell".

    ``names`` holds the classes' names in index order, then the can't-tell answer's; an
    index it does not name (a dataset this version no longer knows) has a null name."""

    names: pa.Array

    def of(self, indices: pa.Array) -> pa.Array:
        classes = len(self.names) - 1
        known = pc.and_(pc.greater_equal(indices, 0), pc.less(indices, classes))
        named = pc.if_else(known, indices, pa.scalar(None, INT))
        return self.names.take(pc.if_else(pc.equal(indices, CANT_TELL), classes, named))


def study_class_names(study: Study) -> ClassNames:
    """The class names of the dataset of the study's analysed items (the designer keeps a
    study to one dataset; for MNIST the digits, for a registered one its class folders'
    names), and the name of its "none / can't tell" answer."""
    datasets = (
        StudyItem.objects.filter(study=study, kind__in=ANALYSED_ITEM_KINDS)
        .order_by()
        .values_list("example__setting__dataset", flat=True)
        .distinct()
    )
    names: tuple[str, ...] = ()
    if len(found := list(datasets)) == 1:
        try:
            names = class_names(found[0])
        except ValidationError:  # a dataset this version no longer knows: indices only
            names = ()
    texts = {int(choice["value"]): str(choice["text"]) for choice in study.label_choices}
    return ClassNames(pa.array([*names, texts.get(CANT_TELL, CANT_TELL_NAME)], STR))


def _named(
    batch: pa.RecordBatch, pairs: tuple[tuple[str, str], ...], names: ClassNames
) -> pa.RecordBatch:
    """Each (name column, index column) pair's names, from the batch's indices."""
    for name_column, index_column in pairs:
        at = batch.schema.get_field_index(name_column)
        batch = batch.set_column(at, name_column, names.of(batch.column(index_column)))
    return batch


# ---- annotations: one row per label of a main or control item ----

ANNOTATION_COLUMNS = (
    Column("label_id", INT, "l.id"),
    Column("participant", STR, "CAST(p.public_id AS TEXT)"),
    Column("participant_excluded", BOOL, "p.excluded"),
    Column("item_id", INT, "i.id"),
    Column("item_kind", STR, "i.kind"),
    Column("stratum", INT, "i.stratum"),
    Column("example_id", INT, "e.id"),
    Column("setting_id", INT, "e.setting_id"),
    Column("setting", STR, "s.name"),
    Column("source_label", INT, "e.source_label"),
    Column("source_class", STR, "NULL"),
    Column("target_label", INT, "e.target_label"),
    Column("target_class", STR, "NULL"),
    Column("value", INT, "l.value"),
    Column("label_class", STR, "NULL"),
    Column("client_response_ms", FLOAT, "l.client_response_ms"),
    Column("server_response_ms", INT, "l.server_response_ms"),
    Column("exposure_ms", FLOAT, "l.exposure_ms"),
    Column("is_correct", BOOL, "l.is_correct"),
    Column("too_fast", BOOL, "l.too_fast"),
    Column("created_at", TIME, "l.created_at"),
)
# (name column, index column): the names are filled in Arrow, from the study's dataset.
SOURCE_TARGET_NAMES = (("source_class", "source_label"), ("target_class", "target_label"))
ANNOTATION_NAMES = (*SOURCE_TARGET_NAMES, ("label_class", "value"))


def annotations_table(study: Study, *, include_excluded: bool = False) -> Table:
    sql = f"""SELECT {_select(ANNOTATION_COLUMNS)}
FROM {LABEL} l
  JOIN {ITEM} i ON i.id = l.item_id
  JOIN {PARTICIPANT} p ON p.id = l.participant_id
  JOIN {EXAMPLE} e ON e.id = i.example_id
  JOIN {SETTING} s ON s.id = e.setting_id
WHERE {_analysed_items(study)} {kept_sql(include_excluded)}
ORDER BY l.id"""
    schema = _schema(ANNOTATION_COLUMNS)
    names = study_class_names(study)
    return Table(
        "annotations",
        sql,
        schema,
        schema,
        lambda batch: _named(_pseudonymised(batch, 1), ANNOTATION_NAMES, names),
    )


# ---- examples: one row per main or control item, its votes and every model's prediction ----


def vote_column(value: int) -> str:
    return "votes_cant_tell" if value == CANT_TELL else f"votes_{value}"


def prediction_column(model: ClassifierModel) -> str:
    return f"prediction_{model.name}"


def predicted_class_column(model: ClassifierModel) -> str:
    # "predicted_class_" is no "prediction_" name: no model's name makes the two collide.
    return f"predicted_class_{model.name}"


def study_values(study: Study) -> list[int]:
    """The answers of the study, in the order its label choices list them."""
    return [int(choice["value"]) for choice in study.label_choices]


def predicting_models(study: Study) -> list[ClassifierModel]:
    """Every model with a prediction on an analysed example of the study."""
    examples = StudyItem.objects.filter(study=study, kind__in=ANALYSED_ITEM_KINDS)
    predicted = Prediction.objects.filter(example_id__in=examples.values("example_id"))
    return list(ClassifierModel.objects.filter(pk__in=predicted.values("model_id")).order_by("id"))


SETTING_COLUMNS = (
    Column("setting_id", INT, "s.id"),
    Column("setting", STR, "s.name"),
    Column("setting_kind", STR, "s.kind"),
    Column("attack_name", STR, "s.attack_name"),
    Column("setting_eps", FLOAT, "s.eps"),
    Column("setting_config", STR, "{config}"),
    Column("dataset", STR, "s.dataset"),
    Column("source_split", STR, "s.source_split"),
)
EXAMPLE_COLUMNS = (
    Column("position", INT, "e.position"),
    Column("source_index", INT, "e.source_index"),
    Column("source_label", INT, "e.source_label"),
    Column("source_class", STR, "NULL"),
    Column("target_label", INT, "e.target_label"),
    Column("target_class", STR, "NULL"),
    Column("linf_distance", FLOAT, "e.linf_distance"),
    Column("l2_distance", FLOAT, "e.l2_distance"),
    Column("l0_distance", INT, "e.l0_distance"),
    Column("image_sha256", STR, "e.image_sha256"),
)


def examples_table(
    study: Study, *, include_excluded: bool = False, with_images: bool = False
) -> Table:
    """One row per analysed item, in item order; ``with_images``: ``file_name`` first (the
    imagefolder's) and the stored image's name last (read, not exported)."""
    values = study_values(study)
    models = predicting_models(study)
    votes = tuple(
        Column(vote_column(value), INT, f"COALESCE(v.votes_{index}, 0)")
        for index, value in enumerate(values)
    )
    predictions = tuple(
        column
        for index, model in enumerate(models)
        for column in (
            Column(prediction_column(model), INT, f"m{index}.label"),
            Column(predicted_class_column(model), STR, "NULL"),
        )
    )
    named = (
        *SOURCE_TARGET_NAMES,
        ("majority_class", "majority_label"),
        *((predicted_class_column(model), prediction_column(model)) for model in models),
    )
    settings = tuple(
        Column(c.name, c.type, c.sql.format(config=json_text("s.config"))) for c in SETTING_COLUMNS
    )
    read = (
        *((Column("file_name", STR, "NULL"),) if with_images else ()),
        Column("example_id", INT, "e.id"),
        Column("item_id", INT, "i.id"),
        Column("item_kind", STR, "i.kind"),
        Column("stratum", INT, "i.stratum"),
        *settings,
        *EXAMPLE_COLUMNS,
        Column("n_labels", INT, "COALESCE(v.n_labels, 0)"),
        *votes,
        Column("majority_label", INT, "NULL"),
        Column("majority_class", STR, "NULL"),
        Column("majority_tie", BOOL, "NULL"),
        *predictions,
        *((Column(STORED_IMAGE, STR, "e.image"),) if with_images else ()),
    )
    tallies = ",\n    ".join(
        f"SUM(CASE WHEN l.value = {int(value)} THEN 1 ELSE 0 END) AS votes_{index}"
        for index, value in enumerate(values)
    )
    joins = "\n".join(
        f"  LEFT JOIN {PREDICTION} m{index} "
        f"ON m{index}.example_id = e.id AND m{index}.model_id = {int(model.pk)}"
        for index, model in enumerate(models)
    )
    sql = f"""SELECT {_select(read)}
FROM {ITEM} i
  JOIN {EXAMPLE} e ON e.id = i.example_id
  JOIN {SETTING} s ON s.id = e.setting_id
  LEFT JOIN (
    SELECT l.item_id, COUNT(*) AS n_labels{"," if tallies else ""}
    {tallies}
    FROM {LABEL} l
      JOIN {ITEM} i ON i.id = l.item_id
      JOIN {PARTICIPANT} p ON p.id = l.participant_id
    WHERE {_analysed_items(study)} {kept_sql(include_excluded)}
    GROUP BY l.item_id
  ) v ON v.item_id = i.id
{joins}
WHERE {_analysed_items(study)}
ORDER BY i.id"""
    read_schema = _schema(read)
    schema = _schema(tuple(column for column in read if column.name != STORED_IMAGE))
    vote_names = [column.name for column in votes]
    names = study_class_names(study)
    return Table(
        "examples",
        sql,
        read_schema,
        schema,
        lambda batch: _named(_with_majority(batch, vote_names, values), named, names),
    )


def _with_majority(
    batch: pa.RecordBatch, vote_names: list[str], values: list[int]
) -> pa.RecordBatch:
    """The majority rule of analysis.measures.majority_label: the single most voted
    answer; a tie at the top has none (and is flagged), as have unlabelled items."""
    counts = (
        np.column_stack([batch.column(name).to_numpy() for name in vote_names])
        if vote_names
        else np.zeros((batch.num_rows, 0), np.int64)
    )
    top = counts.max(axis=1, initial=0)
    winners = (counts == top[:, None]).sum(axis=1)
    single = (top > 0) & (winners == 1)
    first_top = np.asarray(values, np.int64)[counts.argmax(axis=1)] if values else top
    columns = {
        "majority_label": pa.array(first_top, INT, mask=~single),
        "majority_tie": pa.array((top > 0) & (winners > 1), BOOL),
    }
    if "file_name" in batch.schema.names:
        columns["file_name"] = pc.binary_join_element_wise(
            "images/", pc.cast(batch.column("example_id"), STR), ".png", ""
        )
    for name, values_array in columns.items():
        batch = batch.set_column(batch.schema.get_field_index(name), name, values_array)
    return batch


# ---- participants: one row per participant, their counts, exclusion and timing ----

_MEDIAN = """SELECT participant_id, AVG(CAST({value} AS DOUBLE PRECISION)) AS median
    FROM (
      SELECT participant_id, {value},
        ROW_NUMBER() OVER (PARTITION BY participant_id ORDER BY {value}) AS r,
        COUNT(*) OVER (PARTITION BY participant_id) AS n
      FROM counted WHERE {value} IS NOT NULL
    ) ranked
    WHERE r IN ((n + 1) / 2, (n + 2) / 2)
    GROUP BY participant_id"""

PARTICIPANT_COLUMNS = (
    Column("participant", STR, "CAST(p.public_id AS TEXT)"),
    Column("source", STR, "p.source"),
    Column("joined_at", TIME, "p.created_at"),
    Column("consented_at", TIME, "p.consented_at"),
    Column("declined_at", TIME, "p.declined_at"),
    Column("instructions_read_at", TIME, "p.instructions_read_at"),
    Column("practice_done_at", TIME, "p.practice_done_at"),
    Column("completed_at", TIME, "p.completed_at"),
    Column("labels", INT, "COALESCE(f.labels, 0)"),
    Column("attention_answers", INT, "COALESCE(a.answers, 0)"),
    Column("attention_failures", INT, "p.attention_failures"),
    Column("fast_responses", INT, "p.fast_responses"),
    Column("excluded", BOOL, "p.excluded"),
    Column("exclusion_reasons", STR, "{reasons}"),
    Column("median_client_response_ms", FLOAT, "client.median"),
    Column("median_server_response_ms", FLOAT, "server.median"),
    Column("first_label_at", TIME, "f.first_label_at"),
    Column("last_label_at", TIME, "f.last_label_at"),
)


def participants_table(study: Study, *, include_excluded: bool = False) -> Table:
    """Counts and timing over main and control labels, what the analysis uses; medians
    by rank, which both databases compute (SQLite has no percentile function)."""
    columns = tuple(
        Column(c.name, c.type, c.sql.format(reasons=json_text("p.exclusion_reasons")))
        for c in PARTICIPANT_COLUMNS
    )
    labels_of = f"{LABEL} l JOIN {ITEM} i ON i.id = l.item_id WHERE i.study_id = {int(study.pk)}"
    sql = f"""WITH counted AS (
    SELECT l.participant_id, l.client_response_ms AS client_ms,
      l.server_response_ms AS server_ms, l.created_at
    FROM {labels_of} AND i.kind IN {ANALYSED_SQL}
  ),
  figures AS (
    SELECT participant_id, COUNT(*) AS labels,
      MIN(created_at) AS first_label_at, MAX(created_at) AS last_label_at
    FROM counted GROUP BY participant_id
  ),
  attention AS (
    SELECT l.participant_id, COUNT(*) AS answers
    FROM {labels_of} AND i.kind = '{StudyItem.Kind.ATTENTION.value}'
    GROUP BY l.participant_id
  )
SELECT {_select(columns)}
FROM {PARTICIPANT} p
  LEFT JOIN figures f ON f.participant_id = p.id
  LEFT JOIN attention a ON a.participant_id = p.id
  LEFT JOIN ({_MEDIAN.format(value="client_ms")}) client ON client.participant_id = p.id
  LEFT JOIN ({_MEDIAN.format(value="server_ms")}) server ON server.participant_id = p.id
WHERE p.study_id = {int(study.pk)} {kept_sql(include_excluded)}
ORDER BY p.id"""
    read_schema = _schema(columns)
    at = read_schema.get_field_index("exclusion_reasons")
    schema = read_schema.set(at, pa.field("exclusion_reasons", STRINGS))

    def finish(batch: pa.RecordBatch) -> pa.RecordBatch:
        reasons = [
            None if text is None else json.loads(text) for text in batch.column(at).to_pylist()
        ]
        batch = batch.set_column(at, schema.field(at), pa.array(reasons, STRINGS))
        return _pseudonymised(batch, 0)

    return Table("participants", sql, read_schema, schema, finish)


TABLES = {
    "annotations": annotations_table,
    "examples": examples_table,
    "participants": participants_table,
}


def count_rows(study: Study, table: str, include_excluded: bool) -> int:
    """How many rows the table will have: for progress bars."""
    if table == "examples":
        return StudyItem.objects.filter(study=study, kind__in=ANALYSED_ITEM_KINDS).count()
    if table == "annotations":
        rows = Label.objects.filter(item__study=study, item__kind__in=ANALYSED_ITEM_KINDS)
        return (
            rows.count() if include_excluded else rows.filter(participant__excluded=False).count()
        )
    participants = Participant.objects.filter(study=study)
    return participants.count() if include_excluded else participants.filter(excluded=False).count()
