"""The three tables of a study's export: what PostgreSQL reads for each, and how their
rows are made from it.

A table reads its stored columns with one SELECT per chunk of rows (``rows``), a few
more SELECTs over the same chunk where it needs them (``extras``: predictions, the
excluded participants' votes) and small tables once per export (``lookups``:
settings, pseudonyms). PostgreSQL sends them as they are stored, and ``assemble``
makes the export's columns in Arrow and numpy: setting names and budgets by a take,
vote counts, majorities and ties from a count matrix, each model's prediction by a
sorted search. analysis.exports.source runs the queries; analysis.exports.writers
turns the assembled tables into CSV, JSON Lines or Parquet, so that the three formats
hold the same values by construction.

Why not all in SQL, where it was: for 50,000 examples, the 37-column row cost
PostgreSQL 0.40 s as CSV and 0.70 s as JSON (every value's text made on one core);
the stored columns alone cost it 0.12 s, and the rest takes Arrow about as long on the
other core while PostgreSQL reads the next chunk.

Participants appear under their pseudonym (analysis.pseudonyms), made in Python from
their public id: PostgreSQL's sha256 cost more than the rest of their row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from django.db.models import Exists, OuterRef

from analysis.exports import arrays
from analysis.exports.schema import Column, Parts, Query, Table
from analysis.pseudonyms import pseudonyms_of
from analysis.queries import ANALYSED_KINDS
from attacks.models import AttackSetting, ClassifierModel, Example, Prediction
from labeling.models import Label, Participant
from study.models import CANT_TELL, Study, StudyItem

LABEL = Label._meta.db_table
ITEM = StudyItem._meta.db_table
EXAMPLE = Example._meta.db_table
SETTING = AttackSetting._meta.db_table
PARTICIPANT = Participant._meta.db_table
PREDICTION = Prediction._meta.db_table

# The imagefolder export reads each example's stored image name beside its row.
STORED_IMAGE = "stored_image"


def _params(study: Study) -> dict[str, Any]:
    return {"study_id": study.pk, "kinds": list(ANALYSED_KINDS)}


def _kept(include_excluded: bool, alias: str = "p") -> str:
    return "" if include_excluded else f"AND NOT {alias}.excluded"


ANALYSED = "i.study_id = %(study_id)s AND i.kind = ANY(%(kinds)s)"  # over items i


def _named(names: Sequence[str], *sources: Sequence[Column]) -> tuple[Column, ...]:
    """The export's columns by name, taken from the columns read (their SQL dropped)."""
    by_name = {column.name: column for columns in sources for column in columns}
    return tuple(replace(by_name[name], sql="") for name in names)


# ---- annotations: one row per label of a main or control item ----

ANNOTATION_ROW_COLUMNS = (
    Column("label_id", "int", "l.id"),
    Column("participant_id", "int", "l.participant_id"),
    Column("item_id", "int", "i.id"),
    Column("item_kind", "str", "i.kind"),
    Column("stratum", "int", "i.stratum"),
    Column("example_id", "int", "e.id"),
    Column("setting_id", "int", "e.setting_id"),
    Column("source_label", "int", "e.source_label"),
    Column("target_label", "int", "e.target_label"),
    Column("value", "int", "l.value"),
    Column("client_response_ms", "float", "l.client_response_ms"),
    Column("server_response_ms", "int", "l.server_response_ms"),
    Column("is_correct", "bool", "l.is_correct"),
    Column("too_fast", "bool", "l.too_fast"),
    Column("created_at", "time", "l.created_at"),
)
ANNOTATION_COLUMNS = _named(
    ("label_id", "participant", "participant_excluded", "item_id", "item_kind", "stratum",
     "example_id", "setting_id", "setting", "source_label", "target_label", "value",
     "client_response_ms", "server_response_ms", "is_correct", "too_fast", "created_at"),
    ANNOTATION_ROW_COLUMNS,
    (Column("participant", "str"), Column("participant_excluded", "bool"),
     Column("setting", "str")),
)  # fmt: skip


def annotations_table(study: Study, *, include_excluded: bool = False) -> Table:
    rows = Query(
        ANNOTATION_ROW_COLUMNS,
        f"FROM {LABEL} l JOIN {ITEM} i ON i.id = l.item_id JOIN {EXAMPLE} e ON e.id = i.example_id "
        f"WHERE {ANALYSED} {{range}}",
        order="l.id",
        range_on="l.id",
    )
    # One pseudonym per participant, not per label; the excluded are left out of the
    # lookup, and so their labels out of the rows (a join in SQL cost more than it saved).
    participants = Query(
        (
            Column("participant_id", "int", "p.id"),
            Column("public_id", "str", "p.public_id"),
            Column("participant_excluded", "bool", "p.excluded"),
        ),
        f"FROM {PARTICIPANT} p WHERE p.study_id = %(study_id)s {_kept(include_excluded)}",
        order="p.id",
    )
    keys = f"FROM {LABEL} l JOIN {ITEM} i ON i.id = l.item_id WHERE {ANALYSED}"
    return Table(
        "annotations",
        ANNOTATION_COLUMNS,
        "l.id",
        keys,
        rows,
        _assemble_annotations,
        lookups={"participants": participants, "settings": _settings_lookup()},
        params=_params(study),
        prepare_lookups=_with_pseudonyms,
    )


def _with_pseudonyms(parts: Parts) -> Parts:
    """The participants lookup with each one's pseudonym in place of the public id."""
    return {**parts, "participants": _pseudonymised(parts["participants"])}


def _pseudonymised(rows: pa.Table) -> pa.Table:
    """``rows`` with ``participant`` (the pseudonym) in place of ``public_id``."""
    at = rows.column_names.index("public_id")
    names = pa.array(pseudonyms_of(rows.column("public_id").to_pylist()), pa.string())
    return rows.set_column(at, "participant", names)


def _assemble_annotations(parts: Parts) -> pa.Table:
    rows = arrays.inner_join(parts["rows"], parts["participants"], "participant_id")
    rows = arrays.left_join(rows, parts["settings"].select(["setting_id", "setting"]), "setting_id")
    return rows.select([column.name for column in ANNOTATION_COLUMNS])


def count_annotations(study: Study, include_excluded: bool) -> int:
    labels = Label.objects.filter(item__study=study, item__kind__in=ANALYSED_KINDS)
    if not include_excluded:
        labels = labels.filter(participant__excluded=False)
    return labels.count()


# ---- examples: one row per main or control item (in item order), its votes and every
# model's prediction ----


def vote_column(value: int) -> str:
    return "votes_cant_tell" if value == CANT_TELL else f"votes_{value}"


def prediction_column(model: ClassifierModel) -> str:
    return f"prediction_{model.name}"


def study_values(study: Study) -> list[int]:
    """The answers of the study, in the order its label choices list them."""
    return [int(choice["value"]) for choice in study.label_choices]


def predicting_models(study: Study) -> list[ClassifierModel]:
    """Every model with a prediction on an analysed example of the study.

    As EXISTS per model, which stops at a model's first prediction there: the set of
    model ids of all the study's predictions (150,000 for 50,000 examples) took three
    times as long, as did joining the items to the predictions in the EXISTS."""
    examples = StudyItem.objects.filter(study=study, kind__in=ANALYSED_KINDS).values("example_id")
    predicted = Prediction.objects.filter(model=OuterRef("pk"), example_id__in=examples)
    return list(ClassifierModel.objects.filter(Exists(predicted)).order_by("id"))


# The budget: an attack's "eps", or the budget an imported set claims.
_EPS_SQL = """CASE
    WHEN jsonb_typeof(s.config -> 'eps') = 'number' THEN (s.config ->> 'eps')::float8
    WHEN jsonb_typeof(s.config -> 'budget' -> 'eps') = 'number'
        THEN (s.config -> 'budget' ->> 'eps')::float8
END"""

SETTING_COLUMNS = (
    Column("setting_id", "int", "s.id"),
    Column("setting", "str", "s.name"),
    Column("setting_kind", "str", "s.kind"),
    Column("attack_name", "str", "s.attack_name"),
    Column("setting_eps", "float", _EPS_SQL),
    Column("setting_config", "str", "s.config"),
    Column("dataset", "str", "s.dataset"),
    Column("source_split", "str", "s.source_split"),
)


def _settings_lookup() -> Query:
    # Every setting: a few hundred rows at most, where finding the study's own took a
    # scan of its items.
    return Query(SETTING_COLUMNS, f"FROM {SETTING} s", order="s.id")


EXAMPLE_ROW_COLUMNS = (
    Column("example_id", "int", "e.id"),
    Column("item_id", "int", "i.id"),
    Column("item_kind", "str", "i.kind"),
    Column("stratum", "int", "i.stratum"),
    Column("setting_id", "int", "e.setting_id"),
    Column("position", "int", "e.position"),
    Column("source_index", "int", "e.source_index"),
    Column("source_label", "int", "e.source_label"),
    Column("target_label", "int", "e.target_label"),
    Column("linf_distance", "float", "e.linf_distance"),
    Column("l2_distance", "float", "e.l2_distance"),
    Column("l0_distance", "int", "e.l0_distance"),
    Column("image_sha256", "str", "e.image_sha256"),
)
# The export's order: the item and its setting first, then the example, then the votes.
_EXAMPLE_HEAD = ("example_id", "item_id", "item_kind", "stratum")
_EXAMPLE_BODY = (
    "position",
    "source_index",
    "source_label",
    "target_label",
    "linf_distance",
    "l2_distance",
    "l0_distance",
    "image_sha256",
)


def examples_table(
    study: Study,
    *,
    include_excluded: bool = False,
    with_images: bool = False,
    models: list[ClassifierModel] | None = None,
) -> Table:
    """One row per analysed item; ``with_images``: ``file_name`` first (the imagefolder's),
    and among the rows read (not exported) the stored image's name (STORED_IMAGE), for
    the zip to read, and each example's generation job, for the dataset card.
    ``models``: predicting_models(study), where the caller has them."""
    values = study_values(study)
    models = predicting_models(study) if models is None else models
    columns = (
        *_named(_EXAMPLE_HEAD, EXAMPLE_ROW_COLUMNS),
        *_named([column.name for column in SETTING_COLUMNS], SETTING_COLUMNS),
        *_named(_EXAMPLE_BODY, EXAMPLE_ROW_COLUMNS),
        Column("n_labels", "int"),
        *(Column(vote_column(value), "int") for value in values),
        Column("majority_label", "int"),
        Column("majority_tie", "bool"),
        *(Column(prediction_column(model), "int") for model in models),
    )
    # The votes kept on the item, one column per answer: PostgreSQL reads a JSON
    # field for less than Arrow parses the object (0.1 us a cell against 0.7 us a row).
    kept_votes = tuple(
        Column(f"kept_{index}", "int", f"coalesce((i.votes ->> '{int(value)}')::integer, 0)")
        for index, value in enumerate(values)
    )
    row_columns: tuple[Column, ...] = (*EXAMPLE_ROW_COLUMNS, *kept_votes)
    if with_images:
        columns = (Column("file_name", "str"), *columns)
        row_columns = (
            *row_columns,
            Column("job_id", "int", "e.job_id"),
            Column(STORED_IMAGE, "str", "e.image"),
        )
    rows = Query(
        row_columns,
        f"FROM {ITEM} i JOIN {EXAMPLE} e ON e.id = i.example_id WHERE {ANALYSED} {{range}}",
        order="i.id",
        range_on="i.id",
    )
    extras = {"predictions": _predictions_query()}
    if not include_excluded:
        extras["excluded_votes"] = _excluded_votes_query()
    assemble = _ExamplesAssembly(
        tuple(column.name for column in columns),
        values,
        tuple((model.pk, prediction_column(model)) for model in models),
    )
    return Table(
        "examples",
        columns,
        "i.id",
        f"FROM {ITEM} i WHERE {ANALYSED}",
        rows,
        assemble,
        extras=extras,
        lookups={"settings": _settings_lookup()},
        params=_params(study),
        prepare=assemble.prepare,
        settings=_STREAMED_IN_KEY_ORDER,
    )


# The items in key order by their primary key, each one's example found by its own:
# the first rows of a chunk come at once, where a hash join and then a sort of the
# whole chunk sent none for 100 ms (the images and rendering wait for them), for the
# same CPU in all (50,000 items: 200 ms). Not for the labels: nested loops over them
# took twice the CPU of the hash joins.
_STREAMED_IN_KEY_ORDER = "SET LOCAL enable_sort = off"


def _predictions_query() -> Query:
    return Query(
        (
            Column("example_id", "int", "m.example_id"),
            Column("model_id", "int", "m.model_id"),
            Column("label", "int", "m.label"),
        ),
        f"FROM {ITEM} i JOIN {PREDICTION} m ON m.example_id = i.example_id "
        f"WHERE {ANALYSED} {{range}}",
        range_on="i.id",
    )


def _excluded_votes_query() -> Query:
    """The answers that excluded participants gave the chunk's items: few labels, found
    through the participants (a label's index starts with its participant). The votes
    kept on the items count everyone's."""
    return Query(
        (Column("item_id", "int", "l.item_id"), Column("value", "int", "l.value")),
        f"FROM {PARTICIPANT} p JOIN {LABEL} l ON l.participant_id = p.id "
        "WHERE p.study_id = %(study_id)s AND p.excluded {range}",
        range_on="l.item_id",
    )


@dataclass(frozen=True)
class _ExamplesAssembly:
    names: tuple[str, ...]
    values: list[int]
    predictions: tuple[tuple[int, str], ...]  # (model id, column)

    def __call__(self, parts: Parts) -> pa.Table:
        rows = parts["rows"]
        kept = [rows.column(f"kept_{index}") for index in range(len(self.values))]
        counts = arrays.int_matrix(kept, rows.num_rows)
        if "excluded_votes" in parts:
            excluded = parts["excluded_votes"]
            counts -= arrays.counts_by_key(
                rows.column("item_id"), excluded.column("item_id"), excluded.column("value"),
                self.values,
            )  # fmt: skip
        rows = arrays.left_join(rows, parts["settings"], "setting_id", encoded=True)
        columns = dict(zip(rows.column_names, rows.columns, strict=True))
        columns.update(_vote_columns(counts, self.values))
        for model_id, name in self.predictions:
            mine = parts[f"predictions_{model_id}"]
            columns[name] = arrays.lookup(
                rows.column("example_id"), mine.column("example_id"), mine.column("label")
            )
        if "file_name" in self.names:
            columns["file_name"] = pc.binary_join_element_wise(
                "images/", pc.cast(rows.column("example_id"), pa.string()), ".png", ""
            )
        return pa.table({name: columns[name] for name in self.names})

    def prepare(self, parts: Parts) -> Parts:
        """Each model's predictions of the chunk apart, in example order: every block
        looks its rows up in them."""
        predictions = parts["predictions"]
        ordered = predictions.take(pc.sort_indices(predictions, [("example_id", "ascending")]))
        by_model = {
            f"predictions_{model_id}": ordered.filter(
                pc.equal(ordered.column("model_id"), model_id)
            )
            for model_id, _ in self.predictions
        }
        return {**parts, **by_model}


def _vote_columns(counts: np.ndarray, values: list[int]) -> dict[str, pa.Array]:
    """Votes by answer, their total, and the majority rule of
    analysis.measures.majority_label: the single most voted answer; a tie at the top
    has none (and is flagged), as have unlabelled items."""
    top = counts.max(axis=1, initial=0)
    winners = (counts == top[:, None]).sum(axis=1)
    single = (top > 0) & (winners == 1)
    first_top = np.asarray(values, dtype=np.int64)[counts.argmax(axis=1)] if values else top
    return {
        **{vote_column(value): pa.array(counts[:, index]) for index, value in enumerate(values)},
        "n_labels": pa.array(counts.sum(axis=1)),
        "majority_label": pa.array(first_top, mask=~single),
        "majority_tie": pa.array((top > 0) & (winners > 1)),
    }


def count_examples(study: Study) -> int:
    return StudyItem.objects.filter(study=study, kind__in=ANALYSED_KINDS).count()


# ---- participants: one row per participant, counters, exclusion, timing ----

PARTICIPANT_COLUMNS = (
    Column("participant", "str"),
    Column("source", "str", "p.source"),
    Column("joined_at", "time", "p.created_at"),
    Column("consented_at", "time", "p.consented_at"),
    Column("declined_at", "time", "p.declined_at"),
    Column("instructions_read_at", "time", "p.instructions_read_at"),
    Column("practice_done_at", "time", "p.practice_done_at"),
    Column("completed_at", "time", "p.completed_at"),
    Column("labels", "int", "p.analysed_labels"),
    Column("attention_answers", "int", "p.attention_answers"),
    Column("attention_failures", "int", "p.attention_failures"),
    Column("fast_responses", "int", "p.fast_responses"),
    Column("excluded", "bool", "p.excluded"),
    Column("exclusion_reasons", "list", "p.exclusion_reasons"),
    Column("median_client_response_ms", "float", "p.median_client_response_ms"),
    Column("median_server_response_ms", "float", "p.median_server_response_ms"),
    Column("first_label_at", "time", "p.first_label_at"),
    Column("last_label_at", "time", "p.last_label_at"),
)


def participants_table(study: Study, *, include_excluded: bool = False) -> Table:
    # Counts and timing are over main and control labels, what the analysis uses:
    # figures that the statement storing each label keeps on the participant's row
    # (labeling.services.statements), so no label is read here.
    source = f"FROM {PARTICIPANT} p WHERE p.study_id = %(study_id)s {_kept(include_excluded)}"
    read = (Column("public_id", "str", "p.public_id"), *PARTICIPANT_COLUMNS[1:])
    rows = Query(read, source + " {range}", order="p.id", range_on="p.id")
    return Table(
        "participants",
        PARTICIPANT_COLUMNS,
        "p.id",
        source,
        rows,
        lambda parts: _pseudonymised(parts["rows"]),
        params=_params(study),
    )


def count_participants(study: Study, include_excluded: bool) -> int:
    rows = Participant.objects.filter(study=study)
    return rows.count() if include_excluded else rows.filter(excluded=False).count()


TABLES = {
    "annotations": annotations_table,
    "examples": examples_table,
    "participants": participants_table,
}


def count_rows(study: Study, table: str, include_excluded: bool) -> int:
    if table == "annotations":
        return count_annotations(study, include_excluded)
    if table == "examples":
        return count_examples(study)
    return count_participants(study, include_excluded)
