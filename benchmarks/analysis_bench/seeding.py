"""A large finished study, written straight into the database in well under a minute.

The services write one label per transaction, as annotators do; a million of them would
take hours. So the rows are made with numpy (``make_rows``, the same for both
databases) and written in bulk, exactly as the tables hold them after a real study:
20 settings x 2,500 examples (real MNIST test images, stored as PNG files), 3 models
that predicted on every example, participants with 50-200 labels each (about 8,000),
k = 20 labels per example, every label with its LABELLED assignment. PostgreSQL takes
them by COPY, assignments and labels made by SQL from one staging table, with the
foreign-key triggers skipped for the load (session_replication_role = replica: the
rows are consistent by construction, and checking 5 million references one by one at
COMMIT took longer than everything else). SQLite takes them by executemany in one
transaction, each value as Django stores it there.

Humans answer as in the papers: clean controls almost always with the source class;
small-eps sensitivity attacks leave their label alone; large-eps targeted attacks
(Tsipras et al. 2019) and invariance attacks (Tramer et al. 2020) turn a share of
examples, growing with eps, into the target class for most annotators. Each annotator
has an accuracy of 0.75-0.98, says "can't tell" on 30% of their mistakes, and a few
(2%) are excluded for answering too fast.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from study.models import Study

CLASSES = 10
CANT_TELL = -1
# Tramer et al.'s allowed invariance targets per source class (docs/architecture.md).
INVARIANCE_TARGETS = {
    0: [4, 6, 8, 9], 1: [4, 6, 7, 9], 2: [8], 3: [8], 4: [8, 9],
    5: [3, 8], 6: [0], 7: [2, 3], 8: [3], 9: [3, 4, 5],
}  # fmt: skip


@dataclass(frozen=True)
class SettingPlan:
    name: str
    kind: str
    attack_name: str
    config: dict[str, Any]
    targeted: bool
    human_change: float  # share of examples whose human label becomes the target
    item_kind: str = "main"
    norm: str | None = None

    @property
    def eps(self) -> float | None:
        """The budget in ``norm``, as the setting's typed column holds it."""
        if self.norm is None:
            return None
        return float(self.config.get("eps") or self.config["budget"]["eps"])


def setting_plans() -> list[SettingPlan]:
    """20 settings: eps ladders (psychometric families), as a Tramer-style study has."""
    plans = [
        SettingPlan("clean-control-a", "clean", "clean", {}, False, 0.0, "control"),
        SettingPlan("clean-control-b", "clean", "clean", {}, False, 0.0, "control"),
    ]
    config: dict[str, Any]
    for eps in (0.1, 0.2, 0.3, 0.4):
        config = {"eps": eps, "steps": 40, "step_size": eps / 10, "random_start": True}
        name = f"pgd-linf-{eps}"
        plans.append(SettingPlan(name, "sensitivity", "pgd_linf", config, False, 0.02, norm="linf"))
    for eps in (1.0, 2.0, 3.0):
        config = {"eps": eps, "steps": 40, "step_size": eps / 10, "random_start": True}
        plans.append(
            SettingPlan(f"pgd-l2-{eps}", "sensitivity", "pgd_l2", config, False, 0.03, norm="l2")
        )
    for eps, change in ((4.0, 0.2), (8.0, 0.45), (12.0, 0.7)):
        config = {"eps": eps, "steps": 100, "step_size": eps / 20, "targeted": True}
        name = f"large-eps-targeted-{eps}"
        plans.append(
            SettingPlan(
                name, "sensitivity", "pgd_l2_large_targeted", config, True, change, norm="l2"
            )
        )
    for eps, change in ((0.1, 0.15), (0.2, 0.4), (0.3, 0.75), (0.4, 0.9)):
        config = {"eps": eps, "pool_split": "train", "pool_start": 0, "pool_stop": None}
        name = f"invariance-linf-{eps}"
        plans.append(
            SettingPlan(name, "invariance", "nn_invariance_linf", config, True, change, norm="linf")
        )
    for eps, change in ((2.0, 0.3), (3.0, 0.6)):
        config = {"eps": eps, "pool_split": "train", "pool_start": 0, "pool_stop": None}
        name = f"invariance-l2-{eps}"
        plans.append(
            SettingPlan(name, "invariance", "nn_invariance_l2", config, True, change, norm="l2")
        )
    for budget, change in ((25, 0.35), (40, 0.6)):
        config = {"budget": {"norm": "l0", "eps": budget}, "citation": "Tramer et al. 2020"}
        name = f"imported-l0-{budget}"
        plans.append(SettingPlan(name, "imported", "imported", config, True, change, norm="l0"))
    return plans


@dataclass(frozen=True)
class Seeded:
    study_id: int
    labels: int
    examples: int
    settings: int
    participants: int
    excluded: int
    models: int
    seconds: float


@dataclass(frozen=True)
class Rows:
    """Every generated row, as each table holds it; ``labels`` carries what the
    assignments are made from too (one assignment per label, the same id)."""

    examples: pd.DataFrame
    items: pd.DataFrame
    predictions: pd.DataFrame
    participants: pd.DataFrame
    labels: pd.DataFrame


def seed_study(
    media_root: Path,
    *,
    labels: int,
    examples_per_setting: int,
    labels_per_example: int,
    seed: int,
) -> Seeded:
    """The study, its rows and its images, into whichever database Django is set up on."""
    import time

    from django.db import connection, transaction

    started = time.perf_counter()
    generator = np.random.default_rng(seed)
    plans = setting_plans()
    n_examples = examples_per_setting * len(plans)
    if labels != n_examples * labels_per_example:
        raise SystemExit(f"{labels} labels != {n_examples} examples x k = {labels_per_example}")
    with transaction.atomic():
        study, settings, models, job_ids = _rows_by_orm(plans, labels_per_example, seed)
        rows = make_rows(
            generator, plans, study.pk, settings, job_ids, models, examples_per_setting, labels
        )
        _write_images(media_root, rows.examples, generator)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                _write_postgresql(cursor.cursor, rows)  # the psycopg2 cursor, for COPY
        else:
            _write_sqlite(connection.connection, rows)  # the sqlite3 connection
    with connection.cursor() as cursor:
        # Hint bits and statistics, as a settled server has.
        cursor.execute("VACUUM (ANALYZE)" if connection.vendor == "postgresql" else "ANALYZE")
    participants = rows.participants
    return Seeded(
        study.pk,
        labels,
        n_examples,
        len(plans),
        len(participants),
        int(participants["excluded"].sum()),
        len(models),
        time.perf_counter() - started,
    )


def make_rows(
    generator: np.random.Generator,
    plans: Sequence[SettingPlan],
    study_id: int,
    settings: Sequence[int],
    job_ids: Sequence[int],
    models: Sequence[int],
    examples_per_setting: int,
    labels: int,
) -> Rows:
    """The same rows for both databases, from one seeded generator."""
    examples = _examples(generator, plans, settings, job_ids, examples_per_setting)
    items = _items(generator, study_id, examples, plans)
    predictions = _predictions(generator, examples, models)
    participants, counts = _participants(generator, study_id, labels)
    staging = _labels(generator, examples, items, participants, counts, plans)
    # The counters the labelling loop keeps on each item: every slot labelled.
    per_item = np.bincount(staging["item_id"], minlength=len(items) + 1)[items["id"]]
    items["assigned_count"] = items["labelled_count"] = per_item
    return Rows(examples, items, predictions, participants, staging)


# ---- PostgreSQL: COPY ----


def copy_rows(cursor: Any, table: str, frame: pd.DataFrame) -> None:
    """COPY a frame in (CSV; empty cells are NULL)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    columns = ", ".join(frame.columns)
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)


def _write_postgresql(cursor: Any, rows: Rows) -> None:
    # The rows are consistent by construction: skip the per-row foreign-key
    # triggers, which would otherwise check 5 million references at COMMIT.
    cursor.execute("SET LOCAL session_replication_role = replica")
    copy_rows(cursor, "attacks_example", rows.examples.drop(columns=["payload"]))
    copy_rows(cursor, "study_studyitem", rows.items)
    copy_rows(cursor, "attacks_prediction", rows.predictions)
    copy_rows(cursor, "labeling_participant", rows.participants)
    cursor.execute(
        """CREATE TEMP TABLE label_staging (
            id bigint, participant_id bigint, item_id bigint, value smallint,
            client_ms double precision, server_ms integer, too_fast boolean,
            created_at timestamptz) ON COMMIT DROP"""
    )
    copy_rows(cursor, "label_staging", rows.labels)
    cursor.execute(
        """INSERT INTO labeling_assignment
               (id, participant_id, item_id, public_id, status, served_at, lease_expires_at)
           SELECT id, participant_id, item_id, gen_random_uuid(), 'labelled',
                  created_at - server_ms * interval '1 millisecond',
                  created_at + interval '10 minutes'
           FROM label_staging"""
    )
    cursor.execute(
        """INSERT INTO labeling_label
               (id, assignment_id, participant_id, item_id, value, client_key,
                client_response_ms, server_response_ms, created_at, is_correct, too_fast)
           SELECT id, id, participant_id, item_id, value, gen_random_uuid(), client_ms,
                  server_ms, created_at, NULL, too_fast
           FROM label_staging"""
    )
    for table in (
        "attacks_example",
        "attacks_prediction",
        "study_studyitem",
        "labeling_participant",
        "labeling_assignment",
        "labeling_label",
    ):
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 1) FROM {table}))"
        )


# ---- SQLite: executemany in the one transaction, values as Django stores them ----


def _write_sqlite(raw: Any, rows: Rows) -> None:
    labels = rows.labels
    created = labels["created_at"]
    uuids = partial(_uuid_hex, np.random.default_rng(len(labels)))
    assignments = pd.DataFrame(
        {
            "id": labels["id"],
            "participant_id": labels["participant_id"],
            "item_id": labels["item_id"],
            "public_id": uuids(len(labels)),
            "status": "labelled",
            "served_at": created - pd.to_timedelta(labels["server_ms"], unit="ms"),
            "lease_expires_at": created + pd.Timedelta(minutes=10),
        }
    )
    label_rows = pd.DataFrame(
        {
            "id": labels["id"],
            "assignment_id": labels["id"],
            "participant_id": labels["participant_id"],
            "item_id": labels["item_id"],
            "value": labels["value"],
            "client_key": uuids(len(labels)),
            "client_response_ms": labels["client_ms"],
            "server_response_ms": labels["server_ms"],
            "created_at": created,
            "is_correct": None,
            "too_fast": labels["too_fast"],
        }
    )
    participants = rows.participants.assign(
        public_id=[uuid.UUID(text).hex for text in rows.participants["public_id"]]
    )
    for table, frame in (
        ("attacks_example", rows.examples.drop(columns=["payload"])),
        ("study_studyitem", rows.items),
        ("attacks_prediction", rows.predictions),
        ("labeling_participant", participants),
        ("labeling_assignment", assignments),
        ("labeling_label", label_rows),
    ):
        columns = ", ".join(frame.columns)
        marks = ", ".join("?" * len(frame.columns))
        raw.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", _sqlite_rows(frame))


def _sqlite_rows(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """Tuples of plain Python values: times as Django writes them on SQLite (naive UTC
    text), booleans as 0/1, missing values as None."""
    columns = []
    for name in frame.columns:
        values = frame[name]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            text = values.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%f")
            columns.append(text.astype(object).where(values.notna(), None).tolist())
        elif values.dtype == bool:
            columns.append(values.astype(int).tolist())
        else:
            columns.append(values.astype(object).where(values.notna(), None).tolist())
    return zip(*columns, strict=True)


def _uuid_hex(generator: np.random.Generator, n: int) -> list[str]:
    """Random UUIDs as Django's UUIDField stores them on SQLite (32 hex digits)."""
    return [uuid.UUID(bytes=generator.bytes(16), version=4).hex for _ in range(n)]


def _rows_by_orm(
    plans: Sequence[SettingPlan], k: int, seed: int
) -> tuple[Study, list[int], list[int], list[int]]:
    from django.contrib.auth.models import User

    from attacks.models import AttackSetting, ClassifierModel, GenerationJob, JobStatus
    from attacks.provenance import code_version
    from study.models import Study

    owner = User.objects.create_user("analysisbench", is_staff=True)
    models = [
        ClassifierModel.objects.create(
            name=name,
            architecture="small_cnn",
            dataset="mnist",
            training_split="train",
            training_start=0,
            training_stop=60000,
            training_config={"epochs": 10, "adversarial": name != "standard-cnn"},
            weights_sha256=hashlib.sha256(name.encode()).hexdigest(),
            clean_accuracy=accuracy,
            status=JobStatus.SUCCEEDED,
        )
        for name, accuracy in (("standard-cnn", 0.99), ("madry-linf", 0.98), ("l2-robust", 0.985))
    ]
    settings, jobs = [], []
    for index, plan in enumerate(plans):
        setting = AttackSetting.objects.create(
            name=plan.name,
            kind=plan.kind,
            attack_name=plan.attack_name,
            config=plan.config,
            dataset="mnist",
            source_split="test",
            source_start=0,
            source_stop=10000,
            target_model=models[0] if plan.kind == "sensitivity" else None,
            seed=seed + index,
            norm=plan.norm,
            eps=plan.eps,
        )
        job = GenerationJob.objects.create(
            setting=setting,
            offset=0,
            count=0,
            status=JobStatus.SUCCEEDED,
            code_version=code_version(),
            device="cuda",
        )
        settings.append(setting.pk)
        jobs.append(job.pk)
    choices = [{"value": value, "text": str(value)} for value in range(CLASSES)]
    study = Study.objects.create(
        title="analysis benchmark: 1M labels",
        instructions="Which digit is this? Choose 'None / can't tell' if it is no digit.",
        owner=owner,
        label_choices=[*choices, {"value": CANT_TELL, "text": "None / can't tell"}],
        items_per_participant=200,
        labels_per_item=k,
        status=Study.Status.CLOSED,
        recruitment=Study.Recruitment.PROLIFIC,
        attention_checks_per_participant=0,
    )
    return study, settings, [model.pk for model in models], jobs


def _examples(
    generator: np.random.Generator,
    plans: Sequence[SettingPlan],
    settings: Sequence[int],
    job_ids: Sequence[int],
    per_setting: int,
) -> pd.DataFrame:
    from attacks.engine.datasets import load_dataset
    from attacks.engine.images import encode_png

    mnist = load_dataset("mnist", "test")
    pngs = [encode_png(image) for image in mnist.images]  # the stored images: real digits
    frames = []
    for index, (plan, setting_id, job_id) in enumerate(zip(plans, settings, job_ids, strict=True)):
        sources = generator.permutation(len(mnist))[:per_setting]
        source_labels = mnist.labels.numpy()[sources]
        frames.append(
            pd.DataFrame(
                {
                    "setting_id": setting_id,
                    "job_id": job_id,
                    "position": np.arange(per_setting),
                    "source_index": sources,
                    "source_label": source_labels,
                    "target_label": _targets(generator, plan, source_labels),
                    "linf_distance": plan.config.get("eps", 0.0),
                    "l2_distance": generator.uniform(0.5, 4.0, per_setting).round(4),
                    "l0_distance": generator.integers(0, 200, per_setting),
                    "created_at": pd.Timestamp("2025-01-06T09:00Z") + pd.Timedelta(hours=index),
                    "payload": [pngs[source] for source in sources],
                }
            )
        )
    examples = pd.concat(frames, ignore_index=True)
    examples.insert(0, "id", np.arange(1, len(examples) + 1))
    examples["image_sha256"] = [hashlib.sha256(png).hexdigest() for png in examples["payload"]]
    examples["target_label"] = examples["target_label"].astype("Int64")
    return examples


def _targets(
    generator: np.random.Generator, plan: SettingPlan, sources: np.ndarray
) -> list[int | None]:
    if not plan.targeted:
        return [None] * len(sources)
    if plan.kind in ("invariance", "imported"):
        return [int(generator.choice(INVARIANCE_TARGETS[int(s)])) for s in sources]
    return [int((s + generator.integers(1, CLASSES)) % CLASSES) for s in sources]


def _write_images(media_root: Path, examples: pd.DataFrame, generator: np.random.Generator) -> None:
    folder = media_root / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"examples/{generator.bytes(16).hex()}.png" for _ in range(len(examples))]
    for name, payload in zip(names, examples["payload"], strict=True):
        (media_root / name).write_bytes(payload)
    examples["image"] = names


def _items(
    generator: np.random.Generator,
    study_id: int,
    examples: pd.DataFrame,
    plans: Sequence[SettingPlan],
) -> pd.DataFrame:
    kind_of = {index: plan.item_kind for index, plan in enumerate(plans)}
    setting_index = examples["setting_id"].rank(method="dense").astype(int) - 1
    n = len(examples)
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "study_id": study_id,
            "example_id": examples["id"],
            "kind": setting_index.map(kind_of),
            "stratum": setting_index * CLASSES + examples["source_label"],
            "shuffle_key": generator.permutation(n),
            "assigned_count": 0,  # these two set from the labels (make_rows)
            "labelled_count": 0,
        }
    )


def _predictions(
    generator: np.random.Generator, examples: pd.DataFrame, models: Sequence[int]
) -> pd.DataFrame:
    frames = []
    n = len(examples)
    source = examples["source_label"].to_numpy()
    target = examples["target_label"].fillna(-1).to_numpy().astype(int)
    for index, model_id in enumerate(models):
        wrong = (source + generator.integers(1, CLASSES, n)) % CLASSES
        # The attacked model (the first) mostly falls for its attacks; robust ones less so.
        fooled = generator.random(n) < (0.85 if index == 0 else 0.15)
        label = np.where(fooled, np.where(target >= 0, target, wrong), source)
        frames.append(
            pd.DataFrame({"example_id": examples["id"], "model_id": model_id, "label": label})
        )
    predictions = pd.concat(frames, ignore_index=True)
    predictions.insert(0, "id", np.arange(1, len(predictions) + 1))
    return predictions


def _participants(
    generator: np.random.Generator, study_id: int, labels: int
) -> tuple[pd.DataFrame, np.ndarray]:
    counts: list[int] = []
    while sum(counts) < labels:
        counts.append(int(generator.integers(50, 201)))
    counts[-1] -= sum(counts) - labels
    if counts[-1] < 50:  # fold a short last one into the others
        short = counts.pop()
        for index in range(short):
            counts[index % len(counts)] += 1
    n = len(counts)
    key = secrets.token_bytes(32)
    starts = pd.Timestamp("2025-01-10T08:00Z") + pd.to_timedelta(
        generator.uniform(0, 5 * 86400, n), unit="s"
    )
    excluded = generator.random(n) < 0.02
    fast = np.where(excluded, generator.integers(4, 12, n), generator.integers(0, 3, n))
    reasons = [
        json.dumps([f"answered {f} images faster than 250 ms (3 allowed)"]) if e else "[]"
        for e, f in zip(excluded, fast, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "study_id": study_id,
            "public_id": [str(uuid.UUID(bytes=generator.bytes(16), version=4)) for _ in range(n)],
            "created_at": starts,
            "completed_at": starts + pd.to_timedelta(np.asarray(counts) * 2.0, unit="s"),
            "excluded": excluded,
            "source": "prolific",
            "external_id_hash": [
                hmac.new(key, f"prolific:{index:024x}".encode(), "sha256").hexdigest()
                for index in range(n)
            ],
            "recruiter_session": "{}",
            "consented_at": starts,
            "instructions_read_at": starts + pd.Timedelta(seconds=20),
            "attention_failures": 0,
            "fast_responses": fast,
            "exclusion_reasons": reasons,
        }
    )
    return frame, np.asarray(counts)


def _labels(
    generator: np.random.Generator,
    examples: pd.DataFrame,
    items: pd.DataFrame,
    participants: pd.DataFrame,
    counts: np.ndarray,
    plans: Sequence[SettingPlan],
) -> pd.DataFrame:
    """Who labels what and how: each participant's labels go to distinct items, k per item."""
    n_items = len(items)
    total = int(counts.sum())
    participant_of = np.repeat(participants["id"].to_numpy(), counts)
    # Slot j goes to item perm[j mod I]: a participant's consecutive slots are distinct
    # items (no one has more than I labels) and every item gets exactly total / I slots.
    item_index = generator.permutation(n_items)[np.arange(total) % n_items]
    target_raw = examples["target_label"].to_numpy(dtype=float, na_value=np.nan)
    change_by_setting = np.array([plan.human_change for plan in plans])
    setting_index = examples["setting_id"].rank(method="dense").astype(int).to_numpy() - 1
    changed = generator.random(n_items) < change_by_setting[setting_index]
    other = (
        examples["source_label"].to_numpy() + generator.integers(1, CLASSES, n_items)
    ) % CLASSES
    perceived_target = np.where(np.isnan(target_raw), other, np.nan_to_num(target_raw)).astype(int)
    perceived = np.where(changed, perceived_target, examples["source_label"].to_numpy())
    accuracy = generator.uniform(0.75, 0.98, len(counts))[np.repeat(np.arange(len(counts)), counts)]
    right = generator.random(total) < accuracy
    cant_tell = generator.random(total) < 0.3
    noise = generator.integers(0, CLASSES, total)
    value = np.where(right, perceived[item_index], np.where(cant_tell, CANT_TELL, noise))
    client_ms = np.exp(generator.normal(np.log(1500), 0.5, total)).round(1)
    server_ms = (client_ms + generator.uniform(40, 300, total)).astype(int)
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    starts = participants["created_at"].to_numpy()[np.repeat(np.arange(len(counts)), counts)]
    created = pd.to_datetime(starts, utc=True) + pd.to_timedelta(within * 2.0 + 30, unit="s")
    return pd.DataFrame(
        {
            "id": np.arange(1, total + 1),
            "participant_id": participant_of,
            "item_id": items["id"].to_numpy()[item_index],
            "value": value,
            "client_ms": client_ms,
            "server_ms": server_ms,
            "too_fast": client_ms < 250,
            "created_at": created,
        }
    )
