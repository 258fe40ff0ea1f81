"""The three tables of a study's export, as SQL that PostgreSQL renders chunk by chunk.

Each table is one SELECT: its columns are SQL expressions over one FROM clause, and
PostgreSQL does all of the work, joins, vote counts, majorities, pseudonyms and the
text of every value, so that no Python object is made per row. The rows leave in
chunks through ``COPY (SELECT ...) TO STDOUT``, each chunk the rows whose unique
integer key lies in [start, start + CHUNK_ROWS): at most CHUNK_ROWS rows, found
by an index range with no count or OFFSET, so memory stays flat at any study size
and a download starts at once. An export runs in one REPEATABLE READ transaction
(see analysis.exports), so all its chunks read one snapshot.

A million labels: CSV takes PostgreSQL about 4 s on two busy cores, where building
the rows as Python tuples through a cursor and writing them took 13 s.

Participants appear under a pseudonym: an HMAC-SHA256 of their public id keyed with
the server's secret (computed in SQL with PostgreSQL's sha256; ``pseudonym`` is the
same in Python). It is stable across tables and exports, so rows join, yet it
reveals neither the recruiter's id (Prolific PID, MTurk worker id, lab code), nor
its stored hash, nor the public id that the participant's session holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import connection

from analysis.queries import ANALYSED_KINDS
from attacks.models import AttackSetting, ClassifierModel, Example, Prediction
from labeling.models import Label, Participant
from study.models import CANT_TELL, Study, StudyItem

CHUNK_ROWS = 100_000

LABEL = Label._meta.db_table
ITEM = StudyItem._meta.db_table
EXAMPLE = Example._meta.db_table
SETTING = AttackSetting._meta.db_table
PARTICIPANT = Participant._meta.db_table
PREDICTION = Prediction._meta.db_table

_PSEUDONYM_MESSAGE = b"advstudy-export:"
# ISO 8601 in UTC, to the microsecond, as text: the same in CSV, JSON Lines and Parquet.
_UTC_TEXT = """to_char(({}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "int", "float", "bool", "str", "time" (UTC) or "list" (of strings)
    sql: str  # its value, an expression over the table's FROM clause


@dataclass(frozen=True)
class Chunk:
    rows: int
    data: bytes


@dataclass(frozen=True)
class Table:
    """A table's columns and where its rows come from, in chunks ordered by ``key``.

    ``source`` is FROM ... WHERE ... with ``{range}`` where the chunk's key range
    goes (and, in subqueries that aggregate, further placeholders named in
    ``ranges`` with the expression the range applies to there); ``key_source``
    is FROM ... WHERE ... of the same keys with nothing else, to find where a
    chunk ends; ``prefix`` a WITH clause.
    """

    name: str
    columns: tuple[Column, ...]
    source: str
    key: str  # unique and ordering: the chunks are ranges of it
    key_source: str
    params: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, str] = field(default_factory=dict)
    prefix: str = ""

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def with_first(self, column: Column) -> Table:
        return replace(self, columns=(column, *self.columns))

    def csv_chunks(self) -> Iterator[Chunk]:
        """Rows as CSV (no header): NULL is an empty field, an empty string is ``""``."""
        select = ", ".join(_as_text(column) for column in self.columns)
        yield from self._copy(select, "FORMAT csv")

    def json_chunks(self) -> Iterator[Chunk]:
        """Rows as JSON Lines, one object per row with the columns' names as keys.

        Each object is one text concatenated from constant keys and each value's JSON:
        a sixth faster than ``row_to_json`` over a subquery, which spells every key
        again on every row.
        """
        members = " || ',' || ".join(_json_member(column) for column in self.columns)
        for chunk in self._copy(f"'{{' || {members} || '}}'", "FORMAT text"):
            # COPY's text format doubles every backslash; JSON has no raw control
            # characters, so that is the only escape it can have added.
            yield Chunk(chunk.rows, chunk.data.replace(b"\\\\", b"\\"))

    def _copy(self, select: str, options: str) -> Iterator[Chunk]:
        """COPY the rows chunk by chunk: each chunk the keys [start, start + CHUNK_ROWS).

        The key is a unique integer, so a chunk holds at most CHUNK_ROWS rows, and its
        range costs nothing to find (no count, no OFFSET); the next chunk starts at the
        next key that exists, so sparse keys cost no empty queries.
        """
        with connection.cursor() as cursor:
            start = self._next_key(cursor, None)
            while start is not None:
                upto = start + CHUNK_ROWS - 1
                query = f"{self.prefix} SELECT {select} {self._ranged()} ORDER BY {self.key}"
                statement = cursor.mogrify(query, {**self.params, "start": start, "upto": upto})
                buffer = _Buffer()
                cursor.copy_expert(
                    f"COPY ({statement.decode()}) TO STDOUT WITH ({options})", buffer
                )
                if buffer.rows:
                    yield Chunk(buffer.rows, buffer.getvalue())
                start = self._next_key(cursor, upto)

    def _ranged(self) -> str:
        ranges = {"range": self.key, **self.ranges}
        return self.source.format(
            **{
                name: f"AND {expression} BETWEEN %(start)s AND %(upto)s"
                for name, expression in ranges.items()
            }
        )

    def _next_key(self, cursor: Any, after: int | None) -> int | None:
        start = "" if after is None else f"AND {self.key} > %(after)s"
        cursor.execute(
            f"SELECT {self.key} {self.key_source} {start} ORDER BY {self.key} LIMIT 1",
            {**self.params, "after": after},
        )
        row = cursor.fetchone()
        return None if row is None else int(row[0])


class _Buffer:
    """What COPY writes into, a row at a time: a list of rows, joined once."""

    def __init__(self) -> None:
        self._blocks: list[bytes] = []

    @property
    def rows(self) -> int:
        return len(self._blocks)

    def write(self, data: bytes | str) -> int:
        self._blocks.append(data.encode() if isinstance(data, str) else data)
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._blocks)


def _as_text(column: Column) -> str:
    if column.kind == "time":
        return _UTC_TEXT.format(column.sql)
    if column.kind in ("bool", "list"):
        return f"({column.sql})::text"  # true / false; a JSON array
    return column.sql


def _json_member(column: Column) -> str:
    """``"name":value`` of one column as SQL text; ``null`` for NULL."""
    if column.kind == "time":
        value = "'\"' || " + _UTC_TEXT.format(column.sql) + " || '\"'"
    elif column.kind == "float":
        value = f"to_json({column.sql})::text"  # NaN and infinities as strings
    elif column.kind == "str":
        value = f"to_json(({column.sql})::text)::text"
    else:  # int, bool and list (jsonb) print as JSON already
        value = f"({column.sql})::text"
    key = _literal(json.dumps(column.name) + ":")
    return f"{key} || coalesce({value}, 'null')"


def _literal(text: str) -> str:
    """A quoted SQL string; ``%`` doubled, as the query goes through the driver's formatting."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


# ---- pseudonyms ----


def _hmac_pads() -> tuple[bytes, bytes]:
    """HMAC's inner and outer keys (RFC 2104), so that SQL can compute it with sha256."""
    key = settings.SECRET_KEY.encode()
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def pseudonym(participant: Participant) -> str:
    digest = hmac.new(
        settings.SECRET_KEY.encode(), _PSEUDONYM_MESSAGE + participant.public_id.bytes, "sha256"
    )
    return "p_" + digest.hexdigest()[:16]


def pseudonym_sql(alias: str) -> str:
    """``pseudonym`` in SQL, for the participant row ``alias``."""
    inner = f"sha256(%(hmac_inner)s || uuid_send({alias}.public_id))"
    return f"'p_' || left(encode(sha256(%(hmac_outer)s || {inner}), 'hex'), 16)"


def _params(study: Study) -> dict[str, Any]:
    inner, outer = _hmac_pads()
    return {
        "study_id": study.pk,
        "kinds": list(ANALYSED_KINDS),
        "hmac_inner": inner + _PSEUDONYM_MESSAGE,
        "hmac_outer": outer,
    }


def _kept(include_excluded: bool, alias: str = "p") -> str:
    return "" if include_excluded else f"AND NOT {alias}.excluded"


# ---- annotations: one row per label of a main or control item ----


def annotations_table(study: Study, *, include_excluded: bool = False) -> Table:
    columns = (
        Column("label_id", "int", "l.id"),
        Column("participant", "str", "p.pseudonym"),
        Column("participant_excluded", "bool", "p.excluded"),
        Column("item_id", "int", "i.id"),
        Column("item_kind", "str", "i.kind"),
        Column("stratum", "int", "i.stratum"),
        Column("example_id", "int", "e.id"),
        Column("setting_id", "int", "s.id"),
        Column("setting", "str", "s.name"),
        Column("source_label", "int", "e.source_label"),
        Column("target_label", "int", "e.target_label"),
        Column("value", "int", "l.value"),
        Column("client_response_ms", "float", "l.client_response_ms"),
        Column("server_response_ms", "int", "l.server_response_ms"),
        Column("is_correct", "bool", "l.is_correct"),
        Column("too_fast", "bool", "l.too_fast"),
        Column("created_at", "time", "l.created_at"),
    )
    source = f"""
        FROM {LABEL} l
        JOIN {ITEM} i ON i.id = l.item_id
        JOIN {EXAMPLE} e ON e.id = i.example_id
        JOIN {SETTING} s ON s.id = e.setting_id
        JOIN pseudonyms p ON p.id = l.participant_id
        WHERE i.study_id = %(study_id)s AND i.kind = ANY(%(kinds)s) {{range}}
    """
    keys = f"""
        FROM {LABEL} l
        JOIN {ITEM} i ON i.id = l.item_id
        JOIN {PARTICIPANT} p ON p.id = l.participant_id
        WHERE i.study_id = %(study_id)s AND i.kind = ANY(%(kinds)s) {_kept(include_excluded)}
    """
    # One HMAC per participant, not per label: a million SHA-256 pairs cost seconds.
    prefix = f"""WITH pseudonyms AS MATERIALIZED (
        SELECT p.id, p.excluded, {pseudonym_sql("p")} AS pseudonym FROM {PARTICIPANT} p
        WHERE p.study_id = %(study_id)s {_kept(include_excluded)})"""
    return Table("annotations", columns, source, "l.id", keys, _params(study), prefix=prefix)


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
    """Every model with a prediction on an analysed example of the study."""
    examples = StudyItem.objects.filter(study=study, kind__in=ANALYSED_KINDS).values("example_id")
    model_ids = Prediction.objects.filter(example_id__in=examples).values("model_id")
    return list(ClassifierModel.objects.filter(pk__in=model_ids).order_by("id"))


# The budget: an attack's "eps", or the budget an imported set claims.
_EPS_SQL = """CASE
    WHEN jsonb_typeof(s.config -> 'eps') = 'number' THEN (s.config ->> 'eps')::float8
    WHEN jsonb_typeof(s.config -> 'budget' -> 'eps') = 'number'
        THEN (s.config -> 'budget' ->> 'eps')::float8
END"""


def examples_table(study: Study, *, include_excluded: bool = False) -> Table:
    values = study_values(study)
    models = predicting_models(study)
    votes = [f"i.v{index}" for index in range(len(values))]
    # The majority rule of analysis.measures.majority_label: the single most voted
    # answer; a tie at the top has none (and is flagged), as have unlabelled items.
    first_top = " ".join(
        f"WHEN {vote} = i.top THEN {int(value)}" for vote, value in zip(votes, values, strict=True)
    )
    columns = (
        Column("example_id", "int", "e.id"),
        Column("item_id", "int", "i.id"),
        Column("item_kind", "str", "i.kind"),
        Column("stratum", "int", "i.stratum"),
        Column("setting_id", "int", "s.id"),
        Column("setting", "str", "s.name"),
        Column("setting_kind", "str", "s.kind"),
        Column("attack_name", "str", "s.attack_name"),
        Column("setting_eps", "float", "s.eps"),
        Column("setting_config", "str", "s.config_text"),
        Column("dataset", "str", "s.dataset"),
        Column("source_split", "str", "s.source_split"),
        Column("position", "int", "e.position"),
        Column("source_index", "int", "e.source_index"),
        Column("source_label", "int", "e.source_label"),
        Column("target_label", "int", "e.target_label"),
        Column("linf_distance", "float", "e.linf_distance"),
        Column("l2_distance", "float", "e.l2_distance"),
        Column("l0_distance", "int", "e.l0_distance"),
        Column("image_sha256", "str", "e.image_sha256"),
        Column("n_labels", "int", "i.n"),
        *(
            Column(vote_column(value), "int", vote)
            for value, vote in zip(values, votes, strict=True)
        ),
        Column(
            "majority_label",
            "int",
            f"CASE WHEN i.top > 0 AND i.winners = 1 THEN CASE {first_top} END END",
        ),
        Column("majority_tie", "bool", "i.top > 0 AND i.winners > 1"),
        *(
            Column(prediction_column(model), "int", f"m{index}.label")
            for index, model in enumerate(models)
        ),
    )
    items = f"{ITEM} i WHERE i.study_id = %(study_id)s AND i.kind = ANY(%(kinds)s)"
    # A join per model (at most one prediction per example and model): hash joins,
    # where a subquery per cell made 150,000 index lookups for 50,000 rows and 3
    # models and took twice as long.
    predictions = "".join(
        f"LEFT JOIN {PREDICTION} m{index} "
        f"ON m{index}.example_id = e.id AND m{index}.model_id = {int(model.pk)} "
        for index, model in enumerate(models)
    )
    source = f"""
        FROM ({_items_with_votes(values, include_excluded)}) i
        JOIN {EXAMPLE} e ON e.id = i.example_id
        JOIN settings s ON s.id = e.setting_id
        {predictions}
    """
    # Once per setting, not per row: its budget out of the JSON config, the config as text.
    prefix = f"""WITH settings AS MATERIALIZED (
        SELECT s.id, s.name, s.kind, s.attack_name, s.dataset, s.source_split,
            {_EPS_SQL} AS eps, s.config::text AS config_text FROM {SETTING} s
        WHERE s.id IN (SELECT e.setting_id FROM {ITEM} i JOIN {EXAMPLE} e ON e.id = i.example_id
                       WHERE i.study_id = %(study_id)s AND i.kind = ANY(%(kinds)s)))"""
    return Table(
        "examples",
        columns,
        source,
        "i.id",
        f"FROM {items}",
        _params(study),
        ranges={"votes_range": "l.item_id"},
        prefix=prefix,
    )


def _items_with_votes(values: list[int], include_excluded: bool) -> str:
    """The chunk's items with their votes by answer (v0, v1, ... in the study's order),
    their total ``n``, the top count and how many answers share it ``winners``: from
    the counts kept on the item (StudyItem.votes), less those of excluded participants
    unless they are included. Each level is fenced (OFFSET 0) so that PostgreSQL
    computes a vote once per row: inlined, every use of ``top`` re-read the JSON."""
    kept = ", ".join(
        f"coalesce((i.votes ->> '{int(value)}')::integer, 0)"
        + ("" if include_excluded else f" - coalesce(x.v{index}, 0)")
        + f" AS v{index}"
        for index, value in enumerate(values)
    )
    each = [f"c.v{index}" for index in range(len(values))]
    winners = " + ".join(f"({vote} = c.top)::integer" for vote in each)
    return f"""SELECT c.*, {winners} AS winners FROM (
            SELECT c.*, {" + ".join(each)} AS n, GREATEST({", ".join(each)}) AS top FROM (
                SELECT i.id, i.example_id, i.kind, i.stratum, {kept}
                FROM {ITEM} i {_excluded_votes(values, include_excluded)}
                WHERE i.study_id = %(study_id)s AND i.kind = ANY(%(kinds)s) {{range}}
                OFFSET 0) c
            OFFSET 0) c"""


def _excluded_votes(values: list[int], include_excluded: bool) -> str:
    """A join of the votes that excluded participants gave the items of the chunk: few
    labels, found through the participants (a label's index starts with its participant)."""
    if include_excluded:
        return ""
    counts = ", ".join(
        f"count(*) FILTER (WHERE l.value = {int(value)}) AS v{index}"
        for index, value in enumerate(values)
    )
    return f"""LEFT JOIN (
            SELECT l.item_id, {counts}
            FROM {PARTICIPANT} p JOIN {LABEL} l ON l.participant_id = p.id
            WHERE p.study_id = %(study_id)s AND p.excluded {{votes_range}}
            GROUP BY l.item_id
        ) x ON x.item_id = i.id"""


def count_examples(study: Study) -> int:
    return StudyItem.objects.filter(study=study, kind__in=ANALYSED_KINDS).count()


# ---- participants: one row per participant, counters, exclusion, timing ----


def participants_table(study: Study, *, include_excluded: bool = False) -> Table:
    # Counts and timing are over main and control labels, what the analysis uses:
    # figures that the statement storing each label keeps on the participant's row
    # (labeling.services.statements), so no label is read here.
    columns = (
        Column("participant", "str", pseudonym_sql("p")),
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
    rows = f"FROM {PARTICIPANT} p WHERE p.study_id = %(study_id)s {_kept(include_excluded)}"
    return Table("participants", columns, rows + " {range}", "p.id", rows, _params(study))


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
