"""Provenance of a study's export and the dataset card (README.md) that records it.

Core rule 3 asks that every example can be made again: the card carries each
attack setting's full config and seed, each model's weights checksum, the code
versions that generated the examples and that wrote the export, the study's
design, the dates, and the label counts. The YAML header holds all of it as
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

from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from analysis.exports.tables import vote_column
from analysis.queries import ANALYSED_KINDS
from attacks.models import AttackSetting, ClassifierModel, GenerationJob
from attacks.provenance import code_version
from labeling.models import Participant
from study.models import Study, StudyItem

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


# (setting id, item kind, label value, count)
LabelGroup = tuple[int, str, int, int]
# (setting id, item kind, generation job id, count)
ItemGroup = tuple[int, str, int, int]


def provenance(
    study: Study,
    *,
    include_excluded: bool,
    label_groups: list[LabelGroup],
    analysed_items: list[ItemGroup],
    models: list[ClassifierModel],
) -> dict[str, Any]:
    """Everything needed to judge and remake the export's data, as JSON-ready values.

    The imagefolder export sums from the rows it writes ``label_groups``, the exported
    labels by (setting, item kind, value), and ``analysed_items``, the analysed items
    by (setting, kind, job); ``models`` are those with predictions in it. The other
    items (attention checks) are one small query; everything else is summed here.
    """
    item_groups = analysed_items + list(
        StudyItem.objects.filter(study=study)
        .exclude(kind__in=ANALYSED_KINDS)
        .values_list("example__setting_id", "kind", "example__job_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    jobs = GenerationJob.objects.in_bulk({job_id for _, _, job_id, _ in item_groups})
    settings = AttackSetting.objects.filter(
        pk__in={setting_id for setting_id, _, _, _ in item_groups}
    ).select_related("target_model")
    participants = _participant_figures(study, include_excluded)
    return {
        "study": {
            "id": study.pk,
            **{field: getattr(study, field) for field in STUDY_FIELDS},
            "created_at": _when(study.created_at),
            "items": _sum_by(item_groups, lambda row: row[1]),
        },
        "settings": [_setting(setting, item_groups, jobs) for setting in settings],
        "models": [_model(model) for model in _models(models, settings)],
        "code_versions": {
            "examples": _code_versions(jobs.values()),
            "export": code_version(),
        },
        "dates": _dates(study, participants),
        "labels": _label_counts(settings, label_groups, participants, include_excluded),
    }


def _sum_by(rows: Iterable[tuple[Any, ...]], key: Callable[[tuple[Any, ...]], Any]) -> dict:
    """Sums of the last field (a count) of ``rows`` by ``key``."""
    sums: Counter[Any] = Counter()
    for row in rows:
        sums[key(row)] += row[-1]
    return dict(sorted(sums.items()))


def _code_versions(jobs: Iterable[GenerationJob]) -> list[str]:
    return sorted({job.code_version for job in jobs} - {""})


def _setting(
    setting: AttackSetting,
    item_groups: list[ItemGroup],
    jobs: dict[int, GenerationJob],
) -> dict[str, Any]:
    own = [row for row in item_groups if row[0] == setting.pk]
    own_jobs = [jobs[job_id] for job_id in {row[2] for row in own}]
    started = [job.started_at for job in own_jobs if job.started_at]
    finished = [job.finished_at for job in own_jobs if job.finished_at]
    return {
        "id": setting.pk,
        **{field: getattr(setting, field) for field in SETTING_FIELDS},
        "target_model": setting.target_model.name if setting.target_model else None,
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


def _participant_figures(study: Study, include_excluded: bool) -> dict[str, Any]:
    """How many participants, how many excluded, and the first and last analysed label
    (from the figures kept on the participants), in one query."""
    analysed = Q() if include_excluded else Q(excluded=False)
    return Participant.objects.filter(study=study).aggregate(
        participant_count=Count("id"),
        excluded_count=Count("id", filter=Q(excluded=True)),
        first=Min("first_label_at", filter=analysed),
        last=Max("last_label_at", filter=analysed),
    )


def _dates(study: Study, participants: dict[str, Any]) -> dict[str, str | None]:
    return {
        "study_created_at": _when(study.created_at),
        "first_label_at": _when(participants["first"]),
        "last_label_at": _when(participants["last"]),
        "exported_at": _when(timezone.now()),
    }


def _label_counts(
    settings: QuerySet[AttackSetting],
    label_groups: list[LabelGroup],
    participants: dict[str, Any],
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
        "participants": participants["participant_count"],
        "excluded_participants": participants["excluded_count"],
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
    examples = sum(study["items"].get(kind, 0) for kind in ANALYSED_KINDS)
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
        f"Human labels of {examples} images (the main and control items of advstudy study "
        f"{study['id']}, {study['labels_per_item']} labels planned per image): "
        f"{labels['total']} labels from {labels['participants']} participants "
        f"({labels['excluded_participants']} excluded; this export: {who}).\n",
        "`images/` holds each image exactly as the annotators saw it (8-bit PNG). "
        "`metadata.parquet` has one row per image (Parquet keeps each column's type; the "
        "`datasets` library reads it from version 3.4): `file_name`, the attack setting, "
        "source and target labels, distances, the vote count per answer (`votes_cant_tell` is "
        '"none / can\'t tell"), the majority label (`majority_tie` when the top is tied, then '
        "no majority), and each model's prediction on the stored image.\n",
        "Participants never appear by their recruiter's id: per-annotation exports carry an "
        "HMAC pseudonym instead.\n",
        "## Study design\n",
        _bullets({field: study[field] for field in STUDY_FIELDS if field != "instructions"}),
        f"\nInstructions shown to annotators:\n\n{_quote(study['instructions'])}\n",
        "## Attack settings\n",
        *(_setting_text(setting) for setting in facts["settings"]),
        "## Models\n",
        "| model | architecture | weights sha256 | clean accuracy |\n|---|---|---|---|",
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
    summary["source range"] = f"[{setting['source_start']}, {setting['source_stop']})"
    summary["items"] = setting["items"]
    summary["code versions"] = ", ".join(setting["code_versions"]) or "-"
    config = json.dumps(setting["config"], indent=2, sort_keys=True)
    return f"### {setting['name']}\n\n{_bullets(summary)}\n\n```json\n{config}\n```\n"


def _bullets(values: dict[str, Any]) -> str:
    return "\n".join(f"- {key}: {_plain(value)}" for key, value in values.items())


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])
