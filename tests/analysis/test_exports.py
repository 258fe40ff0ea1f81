"""Exports round-trip: what pandas and Hugging Face datasets read back is what the database holds.

The study is built and labelled through the real services (a trained model predicts
on every generated example): four main items and one control, k = 3, one attention
check each, three participants who label everything and a fourth who answers a
main item too fast and is excluded at once. Expected rows are computed here from
the ORM, independently of the export's SQL: votes with analysis.measures'
majority_label, medians with the statistics module.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import statistics
import uuid
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from PIL import Image

from analysis import reading
from analysis.exports import ExportRequest, export_bytes, tables
from analysis.measures import majority_label
from analysis.pseudonyms import pseudonym
from attacks import services as attack_services
from attacks import tasks as attack_tasks
from attacks.dataset_imports import import_dataset
from attacks.engine.datasets import DATASETS
from attacks.models import ClassifierModel, Example, GenerationJob, JobStatus, Prediction
from labeling import services
from labeling.models import Label, Participant
from study.models import CANT_TELL, Study, StudyItem
from study.services import SettingSample, create_study
from tests.analysis.export_study import ANOTHER_PROLIFIC_ID, RAW_IDS, answer_all, labelled_study
from tests.attacks.test_dataset_import import CLASSES, image_folder, zipped

ANALYSED = (StudyItem.Kind.MAIN, StudyItem.Kind.CONTROL)
ANNOTATION_COLUMNS = [
    "label_id", "participant", "participant_excluded", "item_id", "item_kind", "stratum",
    "example_id", "setting_id", "setting", "source_label", "source_class", "target_label",
    "target_class", "value", "label_class", "client_response_ms", "server_response_ms",
    "exposure_ms", "is_correct", "too_fast", "created_at",
]  # fmt: skip
TABLES = ("annotations", "examples", "participants")
FORMATS = ("csv", "jsonl", "parquet")


# ---- given: a labelled study ----


@pytest.fixture
def study(trained_model: ClassifierModel, make_study) -> Study:
    return labelled_study(make_study)


# ---- the expected rows, from the ORM ----


def class_namer(study: Study):
    """A class index's name: the engine's name of the study's dataset's class; the study's
    own text for "none / can't tell"."""
    dataset = study.items.select_related("example__setting").first().example.setting.dataset
    names = dict(enumerate(DATASETS[dataset].classes))
    names.update({CANT_TELL: "None / can't tell"})
    return lambda value: None if value is None else names[value]


def _labels(study: Study, include_excluded: bool):
    labels = Label.objects.filter(item__study=study, item__kind__in=ANALYSED)
    if not include_excluded:
        labels = labels.filter(participant__excluded=False)
    return labels.select_related("participant", "item__example__setting").order_by("id")


def expected_annotations(study: Study, include_excluded: bool = False) -> list[dict]:
    name = class_namer(study)
    return [
        {
            "label_id": label.pk,
            "participant": pseudonym(label.participant),
            "participant_excluded": label.participant.excluded,
            "item_id": label.item_id,
            "item_kind": label.item.kind,
            "stratum": label.item.stratum,
            "example_id": label.item.example_id,
            "setting_id": label.item.example.setting_id,
            "setting": label.item.example.setting.name,
            "source_label": label.item.example.source_label,
            "source_class": name(label.item.example.source_label),
            "target_label": label.item.example.target_label,
            "target_class": name(label.item.example.target_label),
            "value": label.value,
            "label_class": name(label.value),
            "client_response_ms": label.client_response_ms,
            "server_response_ms": label.server_response_ms,
            "exposure_ms": label.exposure_ms,
            "is_correct": label.is_correct,
            "too_fast": label.too_fast,
            "created_at": label.created_at,
        }
        for label in _labels(study, include_excluded)
    ]


def expected_examples(study: Study, include_excluded: bool = False) -> list[dict]:
    votes: dict[int, list[int]] = {}
    for label in _labels(study, include_excluded):
        votes.setdefault(label.item_id, []).append(label.value)
    models = ClassifierModel.objects.order_by("id")
    name = class_namer(study)
    items = StudyItem.objects.filter(study=study, kind__in=ANALYSED).select_related(
        "example__setting"
    )
    rows = []
    for item in sorted(items, key=lambda item: item.pk):
        example, setting = item.example, item.example.setting
        item_votes = votes.get(item.pk, [])
        counts = Counter(item_votes)
        majority = majority_label(item_votes)
        predictions = dict(example.predictions.values_list("model__name", "label"))
        rows.append(
            {
                "example_id": example.pk,
                "item_id": item.pk,
                "item_kind": item.kind,
                "stratum": item.stratum,
                "setting_id": setting.pk,
                "setting": setting.name,
                "setting_kind": setting.kind,
                "attack_name": setting.attack_name,
                "dataset": setting.dataset,
                "source_split": setting.source_split,
                "position": example.position,
                "source_index": example.source_index,
                "source_label": example.source_label,
                "source_class": name(example.source_label),
                "target_label": example.target_label,
                "target_class": name(example.target_label),
                "linf_distance": example.linf_distance,
                "l2_distance": example.l2_distance,
                "l0_distance": example.l0_distance,
                "image_sha256": example.image_sha256,
                "setting_eps": setting.config.get("eps"),
                "setting_config": setting.config,
                "n_labels": len(item_votes),
                **{tables.vote_column(value): counts[value] for value in study.allowed_values},
                "majority_label": majority,
                "majority_class": name(majority),
                "majority_tie": bool(item_votes) and majority is None,
                **{f"prediction_{model.name}": predictions.get(model.name) for model in models},
                **{
                    f"predicted_class_{model.name}": name(predictions.get(model.name))
                    for model in models
                },
            }
        )
    return rows


def expected_participants(study: Study, include_excluded: bool = False) -> list[dict]:
    participants = Participant.objects.filter(study=study).order_by("id")
    if not include_excluded:
        participants = participants.filter(excluded=False)
    rows = []
    for participant in participants:
        labels = list(participant.labels.filter(item__kind__in=ANALYSED))
        client_ms = [ms for label in labels if (ms := label.client_response_ms) is not None]
        server_ms = [label.server_response_ms for label in labels]
        times = [label.created_at for label in labels]
        rows.append(
            {
                "participant": pseudonym(participant),
                "source": participant.source,
                "joined_at": participant.created_at,
                "consented_at": participant.consented_at,
                "declined_at": participant.declined_at,
                "instructions_read_at": participant.instructions_read_at,
                "practice_done_at": participant.practice_done_at,
                "completed_at": participant.completed_at,
                "labels": len(labels),
                "attention_answers": participant.labels.filter(item__kind="attention").count(),
                "attention_failures": participant.attention_failures,
                "fast_responses": participant.fast_responses,
                "excluded": participant.excluded,
                "exclusion_reasons": participant.exclusion_reasons,
                "median_client_response_ms": statistics.median(client_ms) if client_ms else None,
                "median_server_response_ms": statistics.median(server_ms) if labels else None,
                "first_label_at": min(times, default=None),
                "last_label_at": max(times, default=None),
            }
        )
    return rows


EXPECTED = {
    "annotations": expected_annotations,
    "examples": expected_examples,
    "participants": expected_participants,
}


# ---- reading back: every reader's values, made comparable ----


def plain(value: Any) -> Any:
    """One representation per value, whatever the reader: None, int, float, str, UTC time."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.ndarray):
        return [plain(item) for item in value]
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, pd.Timestamp):
        return value.tz_convert("UTC").to_pydatetime() if value.tzinfo else value.to_pydatetime()
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC)
    return value


def comparable(record: dict, table: str) -> dict:
    out = {}
    for key, value in record.items():
        value = plain(value)
        if isinstance(value, str) and key.endswith("_at"):
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, str) and key in ("exclusion_reasons", "setting_config"):
            value = json.loads(value)
        if value is not None and (key.endswith("_class") or key.startswith("predicted_class_")):
            value = str(value)  # a reader of CSV takes a digit's name "7" for the number
        if isinstance(value, datetime.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)  # a reader that dropped the zone
        out[key] = value
    return out


def frame_records(frame: pd.DataFrame, table: str) -> list[dict]:
    return [comparable(record, table) for record in frame.to_dict(orient="records")]


def read_with_pandas(data: bytes, export_format: str) -> pd.DataFrame:
    if export_format == "csv":
        return pd.read_csv(io.BytesIO(data))
    if export_format == "jsonl":
        return pd.read_json(io.BytesIO(data), lines=True)
    return pd.read_parquet(io.BytesIO(data))


def read_with_datasets(path: Path, export_format: str, cache: Path) -> pd.DataFrame:
    import datasets

    builder = {"csv": "csv", "jsonl": "json", "parquet": "parquet"}[export_format]
    loaded = datasets.load_dataset(builder, data_files=str(path), cache_dir=str(cache))
    return loaded["train"].to_pandas()


def export(study: Study, table: str, export_format: str, include_excluded: bool = False) -> bytes:
    return b"".join(export_bytes(study, ExportRequest(table, export_format, include_excluded)))


# ---- the round trips ----


@pytest.mark.parametrize("export_format", FORMATS)
@pytest.mark.parametrize("table", TABLES)
def test_every_table_and_format_round_trips_through_pandas_and_datasets(
    study: Study, table: str, export_format: str, tmp_path: Path
) -> None:
    expected = [comparable(row, table) for row in EXPECTED[table](study)]

    data = export(study, table, export_format)
    path = tmp_path / f"{table}.{export_format}"
    path.write_bytes(data)

    assert frame_records(read_with_pandas(data, export_format), table) == expected
    loaded = read_with_datasets(path, export_format, tmp_path / "cache")
    assert frame_records(loaded, table) == expected


def test_the_rows_hold_the_concrete_values_of_the_study(study: Study) -> None:
    annotations = pd.read_parquet(io.BytesIO(export(study, "annotations", "parquet")))
    examples = pd.read_parquet(io.BytesIO(export(study, "examples", "parquet")))
    people = pd.read_parquet(io.BytesIO(export(study, "participants", "parquet")))

    # 5 counted items x k = 3 slots; the excluded participant's one slot reopened and the
    # open-link participant filled it: 15 kept labels, every item at k.
    assert len(annotations) == 15
    assert set(annotations["item_kind"]) == {"main", "control"}  # no attention answers
    assert not annotations["participant_excluded"].any()
    assert len(examples) == 5
    assert examples["n_labels"].sum() == 15
    assert sorted(examples["n_labels"]) == [3, 3, 3, 3, 3]
    assert (examples["votes_cant_tell"] == 1).sum() == 5  # the open-link participant
    assert examples["prediction_second-model"].notna().sum() == 1
    assert examples["prediction_tiny-cnn"].notna().all()
    assert list(people["source"]) == ["prolific", "prolific", "open"]
    assert list(people["labels"]) == [5, 5, 5]
    assert list(people["attention_answers"]) == [1, 1, 1]


def test_majority_and_ties_follow_the_votes(study: Study) -> None:
    rows = expected_examples(study)
    examples = pd.read_parquet(io.BytesIO(export(study, "examples", "parquet")))

    for row, (_, exported) in zip(rows, examples.iterrows(), strict=True):
        counts = {value: row[tables.vote_column(value)] for value in study.allowed_values}
        top = max(counts.values())
        winners = [value for value, count in counts.items() if count == top]
        assert bool(exported["majority_tie"]) == (len(winners) > 1)
        if len(winners) == 1:
            assert exported["majority_label"] == winners[0]
        else:
            assert pd.isna(exported["majority_label"])
    assert examples["majority_tie"].sum() >= 1  # bob and alice disagree on odd item ids


def test_excluded_participants_come_back_with_include_excluded(study: Study) -> None:
    excluded = Participant.objects.get(study=study, excluded=True)

    votes_7_kept = pd.read_csv(io.BytesIO(export(study, "examples", "csv")))["votes_7"].sum()

    annotations = pd.read_csv(io.BytesIO(export(study, "annotations", "csv", True)))
    examples = pd.read_csv(io.BytesIO(export(study, "examples", "csv", True)))
    people = pd.read_csv(io.BytesIO(export(study, "participants", "csv", True)))

    assert len(annotations) == 16
    assert annotations["participant_excluded"].sum() == 1
    assert examples["n_labels"].sum() == 16
    assert examples["votes_7"].sum() == votes_7_kept + 1  # the excluded one's only answer
    assert len(people) == 4
    row = people[people["participant"] == pseudonym(excluded)].iloc[0]
    assert bool(row["excluded"]) is True
    assert json.loads(row["exclusion_reasons"]) == [
        "answered 1 image faster than 250 ms (0 allowed)"
    ]
    expected = [comparable(r, "annotations") for r in expected_annotations(study, True)]
    assert frame_records(annotations, "annotations") == expected


def test_batched_reads_give_the_same_rows_in_chunks_and_row_groups(
    study: Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = {fmt: export(study, "annotations", fmt) for fmt in FORMATS}
    monkeypatch.setattr(reading, "BATCH_ROWS", 4)

    chunks = list(export_bytes(study, ExportRequest("annotations", "csv")))
    parquet = pq.ParquetFile(io.BytesIO(export(study, "annotations", "parquet")))

    # 15 rows read 4 at a time: the header with the first 4, then 4, 4 and 3, each
    # sent as it is made.
    assert [chunk.count(b"\n") for chunk in chunks] == [5, 4, 4, 3]
    assert b"".join(chunks) == whole["csv"]
    assert export(study, "annotations", "jsonl") == whole["jsonl"]
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [
        4,
        4,
        4,
        3,
    ]
    assert parquet.read().to_pandas().equals(pd.read_parquet(io.BytesIO(whole["parquet"])))


def test_participants_appear_only_under_their_pseudonym(study: Study, tmp_path: Path) -> None:
    participants = list(Participant.objects.filter(study=study))
    secrets = [*RAW_IDS.values(), ANOTHER_PROLIFIC_ID, "SESSION_ID"]
    secrets += [p.external_id_hash for p in participants if p.external_id_hash]
    secrets += [p.external_id_encrypted for p in participants if p.external_id_encrypted]
    secrets += [str(p.public_id) for p in participants]
    secrets += [p.public_id.hex for p in participants]
    secrets += [study.join_token, study.completion_code, study.screen_out_code]

    outputs = [
        export(study, table, fmt, True) for table in TABLES for fmt in FORMATS
    ] + _unzipped_members(export(study, "examples", "hf", True))

    for output in outputs:
        for secret in secrets:
            assert secret.encode() not in output
    pseudonyms = set(pd.read_csv(io.BytesIO(outputs[0]))["participant"])
    assert pseudonyms == {pseudonym(p) for p in participants}
    assert all(name.startswith("p_") and len(name) == 18 for name in pseudonyms)


def _unzipped_members(data: bytes) -> list[bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [archive.read(name) for name in archive.namelist()]


# ---- the Hugging Face imagefolder ----


def _unzip(data: bytes, folder: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)
    return folder


def test_hf_imagefolder_loads_with_the_images_humans_saw(study: Study, tmp_path: Path) -> None:
    import datasets

    folder = _unzip(export(study, "examples", "hf"), tmp_path / "dataset")
    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(folder), cache_dir=str(tmp_path / "cache")
    )["train"]

    expected = expected_examples(study)
    assert len(loaded) == 5
    assert sorted((folder / "images").iterdir()) == sorted(
        folder / "images" / f"{row['example_id']}.png" for row in expected
    )
    by_id = {row["example_id"]: row for row in loaded}
    for row in expected:
        got = by_id[row["example_id"]]
        stored = Example.objects.get(pk=row["example_id"]).image
        with stored.open("rb") as image_file:
            pixels = np.asarray(Image.open(image_file))
        assert np.array_equal(np.asarray(got["image"]), pixels)
        metadata = {key: value for key, value in got.items() if key != "image"}
        assert comparable(metadata, "examples") == comparable(row, "examples")


def test_the_dataset_card_records_the_provenance(study: Study, trained_model, tmp_path) -> None:
    folder = _unzip(export(study, "examples", "hf"), tmp_path / "dataset")
    card = (folder / "README.md").read_text()
    _, header, text = card.split("---\n", 2)
    meta = yaml.safe_load(header)
    facts = meta["advstudy_provenance"]

    assert meta["task_categories"] == ["image-classification"]
    assert meta["size_categories"] == ["n<1K"]
    assert facts["study"]["labels_per_item"] == 3
    assert facts["study"]["items"] == {"main": 4, "control": 1, "attention": 1}
    assert facts["study"]["instructions"] == "Which digit is this?"
    settings = {setting["name"]: setting for setting in facts["settings"]}
    assert set(settings) == {"clean-4-3", "control-items", "attention-items"}
    assert settings["clean-4-3"]["config"] == study.items.first().example.setting.config
    assert settings["clean-4-3"]["seed"] == 0
    models = {model["name"]: model for model in facts["models"]}
    assert models["tiny-cnn"]["weights_sha256"] == trained_model.weights_sha256
    assert models["second-model"]["weights_sha256"] == "ab" * 32
    job_versions = set(GenerationJob.objects.values_list("code_version", flat=True))
    assert set(facts["code_versions"]["examples"]) == job_versions - {""}
    assert facts["code_versions"]["export"]
    assert facts["labels"]["total"] == 15
    kept = Label.objects.filter(item__study=study, participant__excluded=False)
    assert facts["labels"]["by_kind"] == {
        kind: kept.filter(item__kind=kind).count() for kind in ANALYSED
    }
    counted = kept.filter(item__kind__in=ANALYSED)
    assert facts["labels"]["by_value"] == {
        tables.vote_column(value): n
        for value, n in sorted(Counter(counted.values_list("value", flat=True)).items())
    }
    assert facts["labels"]["by_setting"] == dict(
        Counter(counted.values_list("item__example__setting__name", flat=True))
    )
    assert facts["labels"]["participants"] == 4
    assert facts["labels"]["excluded_participants"] == 1
    times = sorted(counted.values_list("created_at", flat=True))
    assert facts["dates"]["first_label_at"] == times[0].astimezone(datetime.UTC).isoformat()
    assert facts["dates"]["last_label_at"] == times[-1].astimezone(datetime.UTC).isoformat()
    assert trained_model.weights_sha256 in text
    assert "## Attack settings" in text
    assert "### clean-4-3" in text


# ---- a researcher's registered dataset: class names and its archive's SHA-256 ----


@pytest.fixture
def fruit_zip(tmp_path: Path) -> Path:
    """A colour ImageFolder of 3 classes named after fruit (8 images each), zipped."""
    return zipped(image_folder(tmp_path / "fruit"), tmp_path / "fruit.zip")


@pytest.fixture
def fruit_study(researcher, fruit_zip: Path) -> Study:
    """A study of 4 clean images of the registered dataset "fruit", k = 3: two participants
    answer the source class, a third "none / can't tell"; a model on it predicts the next
    class on every image."""
    import_dataset(fruit_zip, name="fruit", split="test", created_by=researcher)
    setting = attack_services.create_attack_setting(
        name="fruit-clean", attack_name="clean", config={}, dataset="fruit",
        source_split="test", source_range=(0, 24), seed=0, created_by=researcher,
    )  # fmt: skip
    attack_tasks.run_generation_job(attack_services.create_generation_job(setting, 4).pk)
    model = ClassifierModel.objects.create(
        name="fruit-cnn", architecture="small_cnn", dataset="fruit", training_split="test",
        training_start=0, training_stop=24, weights_sha256="cd" * 32, status=JobStatus.SUCCEEDED,
    )  # fmt: skip
    Prediction.objects.bulk_create(
        Prediction(example=example, model=model, label=(example.source_label + 1) % 3)
        for example in setting.examples.all()
    )
    study = create_study(
        owner=researcher, title="Fruit", instructions="Which fruit?",
        samples=[SettingSample(setting, 4)], controls=None, items_per_participant=4,
        labels_per_item=3,
    )  # fmt: skip
    for choose in (lambda item: item.example.source_label,) * 2 + (lambda item: CANT_TELL,):
        answer_all(services.join_study(study), choose)
    return study


def test_a_registered_datasets_export_names_its_classes_beside_their_indices(
    fruit_study: Study,
) -> None:
    # Given a study of a colour dataset whose classes are named after fruit, labelled
    assert [choice["text"] for choice in fruit_study.label_choices][:3] == list(CLASSES)

    for table in ("annotations", "examples"):
        expected = [comparable(row, table) for row in EXPECTED[table](fruit_study)]
        for export_format in FORMATS:
            # When each table is exported
            frame = read_with_pandas(export(fruit_study, table, export_format), export_format)

            # Then every row names the classes its indices stand for
            assert frame_records(frame, table) == expected, (table, export_format)
    annotations = pd.read_csv(io.BytesIO(export(fruit_study, "annotations", "csv")))
    examples = pd.read_parquet(io.BytesIO(export(fruit_study, "examples", "parquet")))
    sources = {CLASSES[label] for label in annotations["source_label"]}
    assert set(annotations["label_class"]) == {*sources, "None / can't tell"}
    assert annotations["target_class"].isna().all()  # clean images have no target
    for _, row in examples.iterrows():
        assert row["source_class"] == CLASSES[row["source_label"]]
        assert row["majority_class"] == CLASSES[row["source_label"]]  # two of three
        assert row["predicted_class_fruit-cnn"] == CLASSES[(row["source_label"] + 1) % 3]
    assert list(examples.columns[-2:]) == ["prediction_fruit-cnn", "predicted_class_fruit-cnn"]


def test_a_registered_datasets_card_records_its_archive_and_classes(
    fruit_study: Study, fruit_zip: Path, tmp_path: Path
) -> None:
    # Given the SHA-256 of the zip the researcher registered
    sha256 = hashlib.sha256(fruit_zip.read_bytes()).hexdigest()

    # When the study is exported as an imagefolder
    folder = _unzip(export(fruit_study, "examples", "hf"), tmp_path / "dataset")

    # Then its card records the dataset's identity, as data and as text
    card = (folder / "README.md").read_text()
    _, header, text = card.split("---\n", 2)
    facts = yaml.safe_load(header)["advstudy_provenance"]
    (dataset,) = facts["datasets"]
    assert dataset["name"] == "fruit"
    assert dataset["registered"] is True
    assert dataset["classes"] == list(CLASSES)
    assert (dataset["channels"], dataset["size"]) == (3, 32)
    assert dataset["splits"]["test"]["archive_sha256"] == sha256
    assert dataset["splits"]["test"]["source_name"] == "fruit.zip"
    assert dataset["splits"]["test"]["count"] == 24
    (setting,) = facts["settings"]
    assert (setting["dataset"], setting["source_split"]) == ("fruit", "test")
    assert setting["source_archive_sha256"] == sha256
    assert "### fruit (registered)" in text
    assert f"`{sha256}`" in text
    assert "colour 32x32 images; classes apple, banana, cherry." in text
    # and its metadata names the classes as the tables do
    metadata = pd.read_parquet(folder / "metadata.parquet")
    assert set(metadata["source_class"]) <= set(CLASSES)
    assert metadata["predicted_class_fruit-cnn"].notna().all()


def test_a_built_in_datasets_card_names_it_and_its_classes(study: Study, tmp_path) -> None:
    folder = _unzip(export(study, "examples", "hf"), tmp_path / "dataset")
    facts = yaml.safe_load((folder / "README.md").read_text().split("---\n", 2)[1])

    (dataset,) = facts["advstudy_provenance"]["datasets"]
    assert dataset == {"name": "mnist", "registered": False, "classes": [str(d) for d in range(10)]}
    assert {s["source_archive_sha256"] for s in facts["advstudy_provenance"]["settings"]} == {None}


# ---- the download views ----


def test_owner_downloads_a_streamed_attachment(study: Study, researcher_client: Client) -> None:
    url = f"/researcher/studies/{study.pk}/exports/annotations.csv"

    response = researcher_client.get(url)

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="study-{study.pk}-annotations.csv"'
    )
    body = response.getvalue()
    assert body == export(study, "annotations", "csv")


def test_include_excluded_reaches_the_download(study: Study, researcher_client: Client) -> None:
    url = f"/researcher/studies/{study.pk}/exports/participants.jsonl?include_excluded=1"

    response = researcher_client.get(url)

    body = response.getvalue()
    assert len(body.splitlines()) == 4
    assert "with-excluded" in response["Content-Disposition"]


def test_hf_download_is_a_zip(study: Study, researcher_client: Client) -> None:
    response = researcher_client.get(f"/researcher/studies/{study.pk}/exports/examples.hf")

    assert response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.getvalue())).namelist()
    # The images first; then their rows and the card, which sum what was written.
    assert names[-2:] == ["metadata.parquet", "README.md"]
    assert len([name for name in names if name.startswith("images/")]) == 5


def test_downloads_are_for_the_owner_only(study: Study, outsider) -> None:
    url = f"/researcher/studies/{study.pk}/exports/annotations.csv"
    anonymous = Client().get(url)
    other = Client()
    other.force_login(outsider)

    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    assert other.get(url).status_code == 404


@pytest.mark.parametrize(
    "path", ["annotations.xlsx", "votes.csv", "annotations.hf", "participants.hf"]
)
def test_unknown_exports_are_not_found(study: Study, researcher_client: Client, path) -> None:
    assert (
        researcher_client.get(f"/researcher/studies/{study.pk}/exports/{path}").status_code == 404
    )


def test_the_analysis_page_links_every_export(study: Study, researcher_client: Client) -> None:
    html = researcher_client.get(f"/researcher/studies/{study.pk}/analysis/").content.decode()

    for table in TABLES:
        for fmt in FORMATS:
            assert f'href="/researcher/studies/{study.pk}/exports/{table}.{fmt}"' in html
    assert f'href="/researcher/studies/{study.pk}/exports/examples.hf"' in html


# ---- the management command ----


def test_the_command_writes_the_export(study: Study, tmp_path: Path) -> None:
    output = tmp_path / "annotations.parquet"
    stdout = io.StringIO()

    call_command(
        "export_study", str(study.pk), "--table", "annotations", "--format", "parquet",
        "--output", str(output), "--include-excluded", stdout=stdout, stderr=io.StringIO(),
    )  # fmt: skip

    assert len(pd.read_parquet(output)) == 16
    assert "Wrote 16 rows" in stdout.getvalue()
    assert list(tmp_path.iterdir()) == [output]


def test_the_command_writes_an_hf_zip_without_table(study: Study, tmp_path: Path) -> None:
    output = tmp_path / "dataset.zip"

    call_command(
        "export_study", str(study.pk), "--format", "hf", "--output", str(output),
        stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip

    assert "metadata.parquet" in zipfile.ZipFile(output).namelist()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["999999", "--table", "annotations", "--format", "csv"], "no study 999999"),
        (["{study}", "--table", "votes", "--format", "csv"], "invalid choice: 'votes'"),
        (["{study}", "--table", "annotations", "--format", "xlsx"], "invalid choice: 'xlsx'"),
        (["{study}", "--table", "annotations", "--format", "hf"], "the hf format exports"),
        (["{study}", "--format", "csv"], "--table is required"),
    ],
)
def test_bad_arguments_give_a_clear_error_and_write_nothing(
    study: Study, tmp_path: Path, arguments: list[str], message: str
) -> None:
    output = tmp_path / "out.csv"
    arguments = [argument.format(study=study.pk) for argument in arguments]

    with pytest.raises(CommandError, match=message):
        call_command("export_study", *arguments, "--output", str(output))

    assert list(tmp_path.iterdir()) == []


def test_a_missing_output_directory_is_refused(study: Study, tmp_path: Path) -> None:
    output = tmp_path / "missing" / "out.csv"

    with pytest.raises(CommandError, match="no directory"):
        call_command("export_study", str(study.pk), "--table", "examples", "--format", "csv",
                     "--output", str(output))  # fmt: skip

    assert list(tmp_path.iterdir()) == []


# ---- names that CSV, JSON and SQL must all survive ----


def test_awkward_names_survive_every_format(study: Study, trained_model, monkeypatch) -> None:
    awkward_setting = 'clean, "quoted"\\ 100%\tü\x01\nline two'
    awkward_model = 'tiny "cnn" 5%'
    setting = study.items.filter(kind="main").first().example.setting
    type(setting).objects.filter(pk=setting.pk).update(name=awkward_setting)
    ClassifierModel.objects.filter(pk=trained_model.pk).update(name=awkward_model)
    expected = {
        table: [comparable(row, table) for row in EXPECTED[table](study)]
        for table in ("annotations", "examples")
    }

    for table, rows in expected.items():
        for export_format in FORMATS:
            frame = read_with_pandas(export(study, table, export_format), export_format)
            assert frame_records(frame, table) == rows
    assert f"prediction_{awkward_model}" in expected["examples"][0]


def test_export_pseudonyms_equal_the_pages_for_a_long_secret(study: Study, settings) -> None:
    participants = list(Participant.objects.filter(study=study))
    before = [pseudonym(p) for p in participants]
    # Longer than SHA-256's block: HMAC hashes the key first.
    settings.ADVSTUDY_PSEUDONYM_KEY = "k" * 100

    people = pd.read_csv(io.BytesIO(export(study, "participants", "csv", True)))

    expected = [pseudonym(p) for p in participants]
    assert list(people["participant"]) == expected
    assert set(expected).isdisjoint(before)  # the key is what makes them


def test_a_study_without_labels_exports_its_columns_and_no_rows(make_study, tmp_path) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)

    for export_format in FORMATS:
        annotations = export(study, "annotations", export_format)
        examples = read_with_pandas(export(study, "examples", export_format), export_format)
        if export_format != "jsonl":  # an empty JSON Lines file has no column names to give
            frame = read_with_pandas(annotations, export_format)
            assert list(frame.columns) == ANNOTATION_COLUMNS
            assert frame.empty
        else:
            assert annotations == b""
        assert list(examples["n_labels"]) == [0, 0]
        assert not examples["majority_tie"].any()
        assert examples["majority_label"].isna().all()
    names = zipfile.ZipFile(io.BytesIO(export(study, "examples", "hf"))).namelist()
    assert len([name for name in names if name.startswith("images/")]) == 2


def test_participant_medians_skip_missing_browser_times(make_study) -> None:
    # Given counted labels with no browser time (a page that could not measure it):
    # one of a participant's three, and all of another's
    study = make_study(count=3, labels_per_item=2, items_per_participant=3)
    for times in ([None, 700.0, 1500.0], [None, None, None]):
        participant = services.join_study(study)
        for client_ms in times:
            trial = services.next_assignment(participant)
            services.submit_label(participant, trial.public_id, 1, uuid.uuid4(), client_ms)
    expected = [comparable(row, "participants") for row in expected_participants(study)]
    assert [row["median_client_response_ms"] for row in expected] == [1100.0, None]

    for export_format in FORMATS:
        # When the participants table is exported
        data = export(study, "participants", export_format)

        # Then every count, median and time is the plain computation's: the median of
        # the times there are
        assert frame_records(read_with_pandas(data, export_format), "participants") == expected


# ---- outside any transaction, as a download reads: PostgreSQL's through ADBC ----


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_every_export_reads_its_own_snapshot(
    trained_model: ClassifierModel, make_study, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a committed study (no test transaction around it), and the ADBC connections
    # the exports open counted
    study = labelled_study(make_study)
    opened = []
    real = reading._adbc_connection

    def counted() -> object:
        opened.append(1)
        return real()

    monkeypatch.setattr(reading, "_adbc_connection", counted)

    for table in TABLES:
        expected = [comparable(row, table) for row in EXPECTED[table](study)]
        for export_format in FORMATS:
            # When each table is exported
            data = export(study, table, export_format)

            # Then pandas reads back the database's rows, as on the cursor's path
            frame = read_with_pandas(data, export_format)
            assert frame_records(frame, table) == expected, (table, export_format)
    folder = _unzip(export(study, "examples", "hf"), tmp_path / "dataset")
    assert len(list((folder / "images").iterdir())) == 5
    exports = len(TABLES) * len(FORMATS) + 1
    # one ADBC connection an export on PostgreSQL; SQLite reads through Django's
    assert len(opened) == (exports if connection.vendor == "postgresql" else 0)
