"""Provenance of a study's export and the dataset card (README.md) that records it.

Rule 3 of docs/architecture.md (every example is reproducible): the card carries each
attack setting's full config and seed, each model's weights checksum, the datasets
(for a researcher's registered one: its classes, image shape and each split's
SHA-256), the code versions that generated the examples and that wrote the export,
the study's design, the dates, and the label counts. The YAML header holds all of it as
data (JSON is YAML); the text below says the same for people. The study's
join token and completion codes are secrets of a live study and never appear.
"""

from __future__ import annotations

import datetime
import json
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
from django.db.models import QuerySet
from django.utils import timezone

from analysis.exports.tables import (
    ANALYSED_SQL,
    EXAMPLE,
    INT,
    ITEM,
    LABEL,
    PARTICIPANT,
    STR,
    TIME,
    kept_sql,
    vote_column,
)
from analysis.reading import Snapshot, read_table
from attacks.engine.datasets import DATASETS
from attacks.models import AttackSetting, ClassifierModel, GenerationJob
from attacks.provenance import code_version, dataset_record
from study.models import ANALYSED_ITEM_KINDS, Study

STUDY_FIELDS = (
    "title",
    "instructions",
    "label_choices",
    "items_per_participant",
    "labels_per_item",
    "seed",
    "status",
    "presentation",
    "exposure_ms",
    "response_deadline_ms",
    "recruitment",
    "attention_checks_per_participant",
    "lease_minutes",
    "max_attention_failures",
    "min_response_ms",
    "max_fast_responses",
)
SETTING_FIELDS = (
    "name",
    "kind",
    "attack_name",
    "config",
    "dataset",
    "source_split",
    "source_start",
    "source_stop",
    "seed",
)
MODEL_FIELDS = (
    "name",
    "architecture",
    "dataset",
    "training_split",
    "training_start",
    "training_stop",
    "training_config",
    "weights_sha256",
    "clean_accuracy",
    "robust_accuracy",
    "certified_accuracy",
    "evaluation_config",
)


def provenance(
    study: Study, snapshot: Snapshot, *, include_excluded: bool, models: list[ClassifierModel]
) -> dict[str, Any]:
    """Everything needed to judge and remake the export's data, as JSON-ready values;
    its counts read from the export's snapshot. ``models``: those with predictions in it."""
    item_groups = _rows(snapshot, _ITEM_GROUPS, study, include_excluded)
    label_groups = _rows(snapshot, _LABEL_GROUPS, study, include_excluded)
    (participants,) = _rows(snapshot, _PARTICIPANTS, study, include_excluded)
    jobs = GenerationJob.objects.in_bulk({job_id for _, _, job_id, _ in item_groups})
    settings = AttackSetting.objects.filter(
        pk__in={setting_id for setting_id, _, _, _ in item_groups}
    ).select_related("target_model")
    all_models = _models(models, settings)
    datasets = _datasets({s.dataset for s in settings} | {m.dataset for m in all_models})
    return {
        "study": {
            "id": study.pk,
            **{field: getattr(study, field) for field in STUDY_FIELDS},
            "created_at": _when(study.created_at),
            "items": _sum_by(item_groups, lambda row: row[1]),
        },
        "settings": [_setting(setting, item_groups, jobs, datasets) for setting in settings],
        "models": [_model(model) for model in all_models],
        "datasets": list(datasets.values()),
        "code_versions": {
            "examples": _code_versions(jobs.values()),
            "export": code_version(),
        },
        "dates": _dates(study, participants),
        "labels": _label_counts(settings, label_groups, participants, include_excluded),
    }


# (setting id, item kind, generation job id, count) of every item of the study
_ITEM_GROUPS = (
    f"SELECT e.setting_id, i.kind, e.job_id, COUNT(*) FROM {ITEM} i "
    f"JOIN {EXAMPLE} e ON e.id = i.example_id WHERE i.study_id = {{study}} "
    "GROUP BY e.setting_id, i.kind, e.job_id ORDER BY e.setting_id, i.kind, e.job_id",
    (INT, STR, INT, INT),
)
_KEPT_LABELS = (
    f"FROM {LABEL} l JOIN {ITEM} i ON i.id = l.item_id "
    f"JOIN {PARTICIPANT} p ON p.id = l.participant_id JOIN {EXAMPLE} e ON e.id = i.example_id "
    f"WHERE i.study_id = {{study}} AND i.kind IN {ANALYSED_SQL} {{kept}}"
)
# (setting id, item kind, label value, count) of the exported labels
_LABEL_GROUPS = (
    f"SELECT e.setting_id, i.kind, l.value, COUNT(*) {_KEPT_LABELS} "
    "GROUP BY e.setting_id, i.kind, l.value ORDER BY e.setting_id, i.kind, l.value",
    (INT, STR, INT, INT),
)
_PARTICIPANTS = (
    f"SELECT (SELECT COUNT(*) FROM {PARTICIPANT} WHERE study_id = {{study}}), "
    f"(SELECT COUNT(*) FROM {PARTICIPANT} WHERE study_id = {{study}} AND excluded), "
    f"MIN(l.created_at), MAX(l.created_at) {_KEPT_LABELS}",
    (INT, INT, TIME, TIME),
)


def _rows(
    snapshot: Snapshot,
    query: tuple[str, tuple[pa.DataType, ...]],
    study: Study,
    include_excluded: bool,
) -> list[tuple[Any, ...]]:
    sql, types = query
    schema = pa.schema([(f"c{index}", kind) for index, kind in enumerate(types)])
    sql = sql.format(study=int(study.pk), kept=kept_sql(include_excluded))
    table = read_table(snapshot, sql, schema)
    return list(zip(*(column.to_pylist() for column in table.columns), strict=True))


def _sum_by(rows: Iterable[tuple[Any, ...]], key: Callable[[tuple[Any, ...]], Any]) -> dict:
    """Sums of the last field (a count) of ``rows`` by ``key``."""
    sums: Counter[Any] = Counter()
    for row in rows:
        sums[key(row)] += row[-1]
    return dict(sorted(sums.items()))


def _code_versions(jobs: Iterable[GenerationJob]) -> list[str]:
    return sorted({job.code_version for job in jobs} - {""})


def _datasets(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each dataset by name: a registered one's identity (attacks.provenance), a built-in
    one's class names (its name identifies it)."""
    return {name: _dataset(name) for name in sorted(names)}


def _dataset(name: str) -> dict[str, Any]:
    record = dataset_record(name)
    if record is not None:
        return {**record, "registered": True}
    classes = list(DATASETS[name].classes) if name in DATASETS else None
    return {"name": name, "registered": False, "classes": classes}


def _source_sha256(setting: AttackSetting, datasets: dict[str, dict[str, Any]]) -> str | None:
    """The SHA-256 of the registered split the setting's source images come from."""
    split = datasets[setting.dataset].get("splits", {}).get(setting.source_split)
    return split["archive_sha256"] if split else None


def _setting(
    setting: AttackSetting,
    item_groups: list[tuple[Any, ...]],
    jobs: dict[int, GenerationJob],
    datasets: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    own = [row for row in item_groups if row[0] == setting.pk]
    own_jobs = [jobs[job_id] for job_id in {row[2] for row in own}]
    started = [job.started_at for job in own_jobs if job.started_at]
    finished = [job.finished_at for job in own_jobs if job.finished_at]
    return {
        "id": setting.pk,
        **{field: getattr(setting, field) for field in SETTING_FIELDS},
        "target_model": setting.target_model.name if setting.target_model else None,
        "source_archive_sha256": _source_sha256(setting, datasets),
        "created_at": _when(setting.created_at),
        "generated_from": _when(min(started, default=None)),
        "generated_until": _when(max(finished, default=None)),
        "code_versions": _code_versions(own_jobs),
        "items": _sum_by(own, lambda row: row[1]),
    }


def _models(
    predicting: list[ClassifierModel], settings: QuerySet[AttackSetting]
) -> list[ClassifierModel]:
    models = {model.pk: model for model in predicting}
    models.update({s.target_model.pk: s.target_model for s in settings if s.target_model})
    return [models[key] for key in sorted(models)]


def _model(model: ClassifierModel) -> dict[str, Any]:
    return {
        "id": model.pk,
        **{field: getattr(model, field) for field in MODEL_FIELDS},
        "trained_at": _when(model.finished_at),
    }


def _dates(study: Study, participants: tuple[Any, ...]) -> dict[str, str | None]:
    return {
        "study_created_at": _when(study.created_at),
        "first_label_at": _when(participants[2]),
        "last_label_at": _when(participants[3]),
        "exported_at": _when(timezone.now()),
    }


def _label_counts(
    settings: QuerySet[AttackSetting],
    label_groups: list[tuple[Any, ...]],
    participants: tuple[Any, ...],
    include_excluded: bool,
) -> dict[str, Any]:
    names = {setting.pk: setting.name for setting in settings}
    by_value = _sum_by(label_groups, lambda row: row[2])
    return {
        "total": sum(by_value.values()),
        "by_value": {vote_column(value): count for value, count in by_value.items()},
        "by_setting": {
            names[key]: n for key, n in _sum_by(label_groups, lambda row: row[0]).items()
        },
        "by_kind": _sum_by(label_groups, lambda row: row[1]),
        "participants": participants[0],
        "excluded_participants": participants[1],
        "include_excluded": include_excluded,
    }


def _when(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.UTC).isoformat() if moment else None


# ---- the card ----


def size_category(rows: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if rows < limit:
            return name
    return "100K<n<1M" if rows < 1_000_000 else "1M<n<10M"


def dataset_card(facts: dict[str, Any]) -> str:
    study = facts["study"]
    examples = sum(study["items"].get(kind, 0) for kind in ANALYSED_ITEM_KINDS)
    header = {
        "pretty_name": f"advstudy: {study['title']}",
        "license": "unknown",
        "task_categories": ["image-classification"],
        "tags": ["adversarial-examples", "human-labels", "advstudy"],
        "size_categories": [size_category(examples)],
    }
    lines = [f"{key}: {json.dumps(value)}" for key, value in header.items()]
    # JSON is YAML: the provenance as data, indented under its key.
    lines.append("advstudy_provenance:\n" + textwrap.indent(json.dumps(facts, indent=2), "  "))
    return "---\n" + "\n".join(lines) + "\n---\n\n" + _card_text(facts, examples)


def _card_text(facts: dict[str, Any], examples: int) -> str:
    study, labels, dates = facts["study"], facts["labels"], facts["dates"]
    who = "all participants" if labels["include_excluded"] else "excluded participants left out"
    parts = [
        f"# {study['title']}\n",
        f"Human labels of {_count(examples, 'image')} (the main and control items of advstudy "
        f"study {study['id']}, {_count(study['labels_per_item'], 'label')} planned per image): "
        f"{_count(labels['total'], 'label')} ({who}); "
        f"{_count(labels['participants'], 'participant')} joined, "
        f"{labels['excluded_participants']} of them excluded.\n",
        "`images/` holds each image exactly as the annotators saw it (8-bit PNG). "
        "`metadata.parquet` has one row per image (Parquet keeps each column's type; the "
        "`datasets` library reads it from version 3.4): `file_name`, the attack setting, "
        "source and target labels, distances, the vote count per answer (`votes_cant_tell` is "
        '"none / can\'t tell"), the majority label (`majority_tie` when the top is tied, then '
        "no majority), and each model's prediction on the stored image; beside each class "
        "index, its class name (`source_class`, `target_class`, `majority_class`, "
        "`predicted_class_<model>`).\n",
        "Participants never appear by their recruiter's id: per-annotation exports carry an "
        "HMAC pseudonym instead.\n",
        "## Study design\n",
        _bullets({field: study[field] for field in STUDY_FIELDS if field != "instructions"}),
        f"\nInstructions shown to annotators:\n\n{_quote(study['instructions'])}\n",
        "## Datasets\n",
        *(_dataset_text(dataset) for dataset in facts["datasets"]),
        "## Attack settings\n",
        *(_setting_text(setting) for setting in facts["settings"]),
        "## Models\n",
        "| model | architecture | weights sha256 | clean accuracy |\n|---|---|---|---|"
        if facts["models"]
        else "None: no model attacked these images or predicted their classes.",
        *(
            f"| {model['name']} | {model['architecture']} | `{model['weights_sha256']}` | "
            f"{'-' if model['clean_accuracy'] is None else model['clean_accuracy']} |"
            for model in facts["models"]
        ),
        "\n## Code versions\n",
        _bullets(
            {
                "generated the examples": ", ".join(facts["code_versions"]["examples"]) or "-",
                "wrote this export": facts["code_versions"]["export"],
            }
        ),
        "\n## Dates (UTC)\n",
        _bullets(dates),
        "\n## Label counts\n",
        _bullets({key: labels[key] for key in ("total", "by_kind", "by_value", "by_setting")}),
    ]
    return "\n".join(parts) + "\n"


def _setting_text(setting: dict[str, Any]) -> str:
    summary = {
        key: setting[key]
        for key in ("kind", "attack_name", "dataset", "source_split", "seed", "target_model")
    }
    if setting["source_archive_sha256"]:
        summary["source archive sha256"] = setting["source_archive_sha256"]
    summary["source range"] = f"[{setting['source_start']}, {setting['source_stop']})"
    summary["items"] = setting["items"]
    summary["code versions"] = ", ".join(setting["code_versions"]) or "-"
    config = json.dumps(setting["config"], indent=2, sort_keys=True)
    return f"### {setting['name']}\n\n{_bullets(summary)}\n\n```json\n{config}\n```\n"


def _dataset_text(dataset: dict[str, Any]) -> str:
    classes = ", ".join(dataset["classes"] or ["unknown"])
    if not dataset["registered"]:
        return f"- {dataset['name']} (built in): classes {classes}\n"
    colour = {1: "grey", 3: "colour"}.get(dataset["channels"], f"{dataset['channels']}-channel")
    splits = [
        f"| {name} | {split['count']} | {_cell(split['source_name'])} ({split['source_kind']}) | "
        f"`{split['archive_sha256']}` |"
        for name, split in dataset["splits"].items()
    ]
    return "\n".join(
        [
            f"### {dataset['name']} (registered)\n",
            f"{colour} {dataset['size']}x{dataset['size']} images; classes {classes}.\n",
            "| split | images | imported from | sha256 |\n|---|---|---|---|",
            *splits,
            "",
        ]
    )


def _cell(text: str) -> str:
    # A file's name is the researcher's: a "|" in it would end the table's cell.
    return text.replace("|", "\\|")


def _count(number: int, noun: str) -> str:
    """'1 label', '3 labels': a study of one label per image reads as English."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _bullets(values: dict[str, Any]) -> str:
    return "\n".join(f"- {key}: {_plain(value)}" for key, value in values.items())


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])
