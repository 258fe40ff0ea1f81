"""Datasets registered from an ImageFolder (a folder or a zip of ``class/*.png|jpg``): the
command and the page import them with their class names, shape and checksum; archives
that cannot be imported are refused with a sentence naming the file, and nothing is
stored; a registered dataset is then loaded, offered and attacked like a built-in one."""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.forms import ChoiceField, Form
from django.test import Client
from django.urls import reverse
from PIL import Image
from torch import nn

from attacks import dataset_import_jobs, imports, services, tasks
from attacks.datasets import configured_dataset
from attacks.engine.datasets import DATASETS
from attacks.forms import AttackSettingForm, TrainModelForm
from attacks.model_forms import RegisterModelForm
from attacks.models import (
    ClassifierModel,
    DatasetImportJob,
    DatasetSplit,
    JobStatus,
    RegisteredDataset,
)
from attacks.provenance import dataset_record
from tests.api.conftest import token_client
from tests.attacks.test_import_limits import REPOSITORY, database_url_of_the_tests
from tests.fixtures import PASSWORD

CLASSES = ("apple", "banana", "cherry")


def colour_image(label: int, index: int, size: int = 32) -> Image.Image:
    """A colour image whose mean colour tells its class: red, green or blue, brightening."""
    rng = np.random.default_rng(label * 100 + index)
    pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    pixels[..., label] = 150 + (3 * index) % 100
    return Image.fromarray(pixels, "RGB")


def image_folder(root: Path, per_class: int = 8, size: int = 32, offset: int = 0) -> Path:
    """3 classes of RGB images, PNG and JPEG mixed (JPEG for every fourth)."""
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            image = colour_image(label, index + offset, size)
            suffix = "jpg" if index % 4 == 3 else "png"
            image.save(root / name / f"{index:03d}.{suffix}", quality=95)
    return root


def zipped(folder: Path, path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):  # folders too, as `zip -r` writes them
            archive.write(file, prefix + file.relative_to(folder).as_posix())
    return path


def stored_dataset_files() -> set[str]:
    storage = DatasetSplit._meta.get_field("images").storage
    return set(storage.listdir("datasets")[1]) if storage.exists("datasets") else set()


def import_by_command(name: str, **options: object) -> str:
    output = io.StringIO()
    call_command("import_dataset", name, stdout=output, **options)
    return output.getvalue()


# The command ---------------------------------------------------------------------------


def test_the_command_imports_a_colour_folder_with_its_classes_shape_and_checksum(
    db, tmp_path
) -> None:
    folder = image_folder(tmp_path / "fruit")
    train = image_folder(tmp_path / "fruit-train", per_class=10, offset=20)

    printed = import_by_command("fruit", folder=folder)
    import_by_command("fruit", folder=train, split="train")

    dataset = RegisteredDataset.objects.get(name="fruit")
    assert (dataset.classes, dataset.channels, dataset.size) == (list(CLASSES), 3, 32)
    assert dataset.created_by is None
    test = dataset.splits.get(split="test")
    assert (test.count, test.class_counts, test.source_kind) == (24, [8, 8, 8], "folder")
    assert dataset.splits.get(split="train").class_counts == [10, 10, 10]
    assert "24 colour images of 32x32" in printed
    assert "apple 8, banana 8, cherry 8" in printed
    assert "no train split" in printed  # said before the train split came
    loaded = configured_dataset("fruit", "test")
    assert loaded.images.shape == (24, 3, 32, 32)
    assert loaded.classes == CLASSES
    assert loaded.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    # The pixels are the files' own (the PNGs exactly), in sorted order, channels first.
    first_banana = np.asarray(Image.open(folder / "banana" / "000.png")).transpose(2, 0, 1)
    assert np.array_equal(loaded.images[8].numpy(), first_banana)
    assert DATASETS["fruit"].channels == 3
    assert DATASETS["fruit"].size == 32
    assert len(configured_dataset("fruit", "train")) == 30


def test_a_zip_keeps_its_sha256_and_a_grey_set_is_resized_when_asked(db, tmp_path) -> None:
    folder = tmp_path / "grey"
    for label, name in enumerate(("b", "a")):
        (folder / name).mkdir(parents=True)
        for index in range(3):
            Image.new("L", (40, 40), 80 * label + index).save(folder / name / f"{index}.png")
    archive = zipped(folder, tmp_path / "grey.zip", prefix="grey/")

    import_by_command("grey", zip=archive, resize=16)

    dataset = RegisteredDataset.objects.get(name="grey")
    assert (dataset.classes, dataset.channels, dataset.size) == (["a", "b"], 1, 16)
    split = dataset.splits.get()
    assert split.archive_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (split.source_kind, split.resized_to) == ("zip", 16)
    assert configured_dataset("grey", "test").images.shape == (6, 1, 16, 16)


def test_a_set_imported_on_a_registered_dataset_records_the_datasets_identity(db, tmp_path) -> None:
    # Given a registered colour dataset, from a zip
    archive = zipped(image_folder(tmp_path / "fruit"), tmp_path / "fruit.zip")
    import_by_command("fruit", zip=archive)
    published = tmp_path / "published.npz"
    images = np.stack([np.asarray(colour_image(label, 50)) for label in range(3)])
    np.savez(published, images=images, source_labels=np.arange(3))

    # When a published example set on it is imported
    setting = imports.import_examples(published, name="fruit-set", dataset="fruit", split="test")

    # Then its provenance names the images it is of: classes, shape, the zip's SHA-256
    record = setting.config["provenance"]["dataset"]
    assert (record["name"], record["classes"]) == ("fruit", list(CLASSES))
    assert (record["channels"], record["size"]) == (3, 32)
    split = record["splits"]["test"]
    assert split["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (split["source_name"], split["source_kind"], split["count"]) == ("fruit.zip", "zip", 24)
    assert record == dataset_record("fruit")
    assert dataset_record("mnist") is None  # a built-in dataset's name identifies it


def write_mixed_sizes(root: Path) -> Path:
    image_folder(root)
    colour_image(1, 0, 28).save(root / "banana" / "005.png")
    return root


def write_empty_class(root: Path) -> Path:
    image_folder(root)
    (root / "durian").mkdir()
    return root


def write_corrupt(root: Path) -> Path:
    image_folder(root)
    (root / "cherry" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def write_truncated(root: Path) -> Path:
    image_folder(root)
    whole = (root / "cherry" / "003.jpg").read_bytes()
    (root / "cherry" / "003.jpg").write_bytes(whole[: len(whole) // 2])
    return root


def write_flat(root: Path) -> Path:
    root.mkdir()
    colour_image(0, 0).save(root / "one.png")
    return root


def write_too_large(root: Path) -> Path:
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        colour_image(0, 0, 300).save(root / name / "big.png")
    return root


REFUSALS = {
    "mixed sizes": (
        write_mixed_sizes,
        "images differ in size: apple/000.png is 32x32 but banana/005.png is 28x28",
    ),
    "empty class": (write_empty_class, "class folder durian holds no images"),
    "corrupt": (write_corrupt, "cherry/002.png is not an image Pillow can read"),
    "truncated": (write_truncated, "cherry/003.jpg could not be decoded"),
    "no class folders": (write_flat, "has no class folders"),
    "too large": (write_too_large, "apple/big.png is 300x300; images may be at most 256x256"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_the_command_refuses_what_cannot_be_imported_and_stores_nothing(db, tmp_path, case) -> None:
    write, sentence = REFUSALS[case]
    folder = write(tmp_path / "bad")
    files_before = stored_dataset_files()

    with pytest.raises(CommandError, match=sentence.replace(".", r"\.")):
        import_by_command("bad", folder=folder)
    with pytest.raises(CommandError, match=sentence.replace(".", r"\.")):
        import_by_command("bad", zip=zipped(folder, tmp_path / "bad.zip"))

    assert not RegisteredDataset.objects.exists()
    assert not DatasetSplit.objects.exists()
    assert stored_dataset_files() == files_before


def test_too_many_images_and_a_second_split_of_other_classes_are_refused(
    db, tmp_path, settings
) -> None:
    folder = image_folder(tmp_path / "fruit")
    settings.ADVSTUDY_MAX_DATASET_IMAGES = 20
    with pytest.raises(CommandError, match="holds 24 images; an import holds at most 20"):
        import_by_command("fruit", folder=folder)
    settings.ADVSTUDY_MAX_DATASET_IMAGES = 100
    import_by_command("fruit", folder=folder)
    other = tmp_path / "other"
    (other / "kiwi").mkdir(parents=True)
    colour_image(0, 0).save(other / "kiwi" / "0.png")

    with pytest.raises(CommandError, match="The classes differ from those of fruit: it has apple"):
        import_by_command("fruit", folder=other, split="train")
    with pytest.raises(CommandError, match="has a test split already"):
        import_by_command("fruit", folder=folder)
    with pytest.raises(CommandError, match="mnist is a built-in dataset"):
        import_by_command("mnist", folder=folder)
    assert DatasetSplit.objects.count() == 1


# The page -----------------------------------------------------------------------------


def upload(client: Client, archive: Path, **fields: object):
    data = SimpleUploadedFile(archive.name, archive.read_bytes(), "application/zip")
    return client.post(reverse("dataset-import"), {"archive": data, **fields})


@pytest.fixture
def upload_eagerly(researcher_client, eager_tasks, django_capture_on_commit_callbacks):
    """Post a zip with no broker: the import job runs within the request, once it commits."""

    def post(archive: Path, **fields: object):
        with django_capture_on_commit_callbacks(execute=True):
            return upload(researcher_client, archive, **fields)

    return post


def stored_uploads() -> list[str]:
    storage = DatasetImportJob._meta.get_field("archive").storage
    return storage.listdir("dataset-uploads")[1] if storage.exists("dataset-uploads") else []


@pytest.fixture(autouse=True)
def no_stored_uploads() -> None:
    """Each test starts with no stored zip: a queued job of another test leaves its own."""
    storage = DatasetImportJob._meta.get_field("archive").storage
    for name in stored_uploads():
        storage.delete(f"dataset-uploads/{name}")


def job_of(response) -> DatasetImportJob:
    assert response.status_code == 302, response.content.decode()[:2000]
    match = re.fullmatch(r"/researcher/datasets/imports/(\d+)/", response["Location"])
    assert match, response["Location"]
    return DatasetImportJob.objects.get(pk=int(match.group(1)))


def test_the_page_queues_a_zip_whose_job_registers_it_for_its_researcher(
    researcher_client, researcher, upload_eagerly, tmp_path
) -> None:
    archive = zipped(image_folder(tmp_path / "fruit"), tmp_path / "fruit.zip", prefix="fruit/")

    job = job_of(upload_eagerly(archive, name="fruit", split="test"))

    assert (job.status, job.done, job.total, job.error) == (JobStatus.SUCCEEDED, 24, 24, "")
    dataset = RegisteredDataset.objects.get(name="fruit")
    assert job.result == dataset.splits.get()
    assert dataset.created_by == researcher
    assert dataset.splits.get().archive_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert dataset.splits.get().source_name == "fruit.zip"
    assert (job.archive.name, stored_uploads()) == ("", [])  # the zip is deleted once read
    page = researcher_client.get(reverse("dataset-import-job", args=[job.pk])).content.decode()
    assert "24 of 24 images" in page
    assert reverse("dataset-detail", args=[dataset.pk]) in page
    status = researcher_client.get(reverse("dataset-import-status", args=[job.pk])).json()
    assert (status["status"], status["detail"], status["dataset_id"]) == (
        "succeeded",
        "24 of 24 images",
        dataset.pk,
    )
    page = researcher_client.get(reverse("dataset-detail", args=[dataset.pk])).content.decode()
    assert "No train split" in page
    assert "0 apple" in page
    assert "colour, 32x32" in page
    assert "fruit" in researcher_client.get(reverse("dataset-list")).content.decode()


def test_a_queued_import_waits_for_a_worker_and_is_shown_to_its_researcher_alone(
    researcher_client, outsider, tmp_path
) -> None:
    # With a broker but no worker (and nothing committed, in this test), the job waits.
    archive = zipped(image_folder(tmp_path / "fruit", per_class=2), tmp_path / "fruit.zip")

    job = job_of(upload(researcher_client, archive, name="fruit", split="test"))

    assert (job.status, job.archive_name, len(stored_uploads())) == (
        JobStatus.QUEUED,
        "fruit.zip",
        1,
    )
    assert not RegisteredDataset.objects.exists()
    page = researcher_client.get(reverse("dataset-import-job", args=[job.pk])).content.decode()
    assert "waiting for a worker" in page
    assert reverse("dataset-import-status", args=[job.pk]) in page  # the live status polls it
    other = Client()
    other.force_login(outsider)
    assert other.get(reverse("dataset-import-job", args=[job.pk])).status_code == 404
    assert other.get(reverse("dataset-import-status", args=[job.pk])).status_code == 404


@pytest.mark.parametrize("case", ["mixed sizes", "empty class", "corrupt", "no class folders"])
def test_a_bad_zips_job_fails_with_its_sentence_and_stores_nothing(
    researcher_client, upload_eagerly, tmp_path, case
) -> None:
    write, sentence = REFUSALS[case]
    archive = zipped(write(tmp_path / "bad"), tmp_path / "bad.zip")
    files_before = stored_dataset_files()

    job = job_of(upload_eagerly(archive, name="bad", split="test"))

    assert job.status == JobStatus.FAILED
    assert sentence in job.error
    assert job.result is None
    assert not RegisteredDataset.objects.exists()
    assert stored_dataset_files() == files_before
    assert stored_uploads() == []
    page = researcher_client.get(reverse("dataset-import-job", args=[job.pk])).content.decode()
    assert sentence in html.unescape(page)
    status = researcher_client.get(reverse("dataset-import-status", args=[job.pk])).json()
    assert (status["status"], status["dataset_id"]) == ("failed", None)
    assert sentence in status["error"]


def test_a_job_run_again_does_nothing_more_and_a_redelivered_one_finishes(
    researcher_client, tmp_path
) -> None:
    # Given a queued job whose worker claimed it and was lost before it finished
    archive = zipped(image_folder(tmp_path / "fruit", per_class=2), tmp_path / "fruit.zip")
    job = job_of(upload(researcher_client, archive, name="fruit", split="test"))
    assert dataset_import_jobs.claim_dataset_import(job.pk) is not None

    tasks.import_dataset(job.pk)  # redelivered to another worker (acks_late)
    job.refresh_from_db()
    finished = (job.status, job.done, job.finished_at, job.result_id)
    tasks.import_dataset(job.pk)  # delivered once more, after it finished
    job.refresh_from_db()

    assert finished[:2] == (JobStatus.SUCCEEDED, 6)
    assert (job.status, job.done, job.finished_at, job.result_id) == finished
    assert DatasetSplit.objects.count() == 1
    assert stored_uploads() == []


def test_a_failed_job_run_again_keeps_its_sentence(researcher_client, tmp_path) -> None:
    write, sentence = REFUSALS["empty class"]
    archive = zipped(write(tmp_path / "bad"), tmp_path / "bad.zip")
    job = job_of(upload(researcher_client, archive, name="bad", split="test"))

    tasks.import_dataset(job.pk)
    tasks.import_dataset(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert sentence in job.error
    assert not DatasetSplit.objects.exists()
    assert stored_uploads() == []


def test_a_split_registered_meanwhile_fails_the_second_job_and_doubles_nothing(
    researcher_client, tmp_path
) -> None:
    archive = zipped(image_folder(tmp_path / "fruit", per_class=2), tmp_path / "fruit.zip")
    first = job_of(upload(researcher_client, archive, name="fruit", split="test"))
    second = job_of(upload(researcher_client, archive, name="fruit", split="test"))

    tasks.import_dataset(first.pk)
    tasks.import_dataset(second.pk)

    second.refresh_from_db()
    assert (second.status, second.error) == (
        JobStatus.FAILED,
        "Dataset 'fruit' has a test split already.",
    )
    assert DatasetSplit.objects.count() == 1
    assert stored_uploads() == []


def test_the_page_refuses_at_once_what_it_can_check_cheaply(
    researcher, researcher_client, tmp_path, settings
) -> None:
    not_zip = tmp_path / "images.zip"
    not_zip.write_bytes(b"these are not the images you are looking for")
    response = upload(researcher_client, not_zip, name="nozip", split="test")
    assert response.status_code == 400
    assert "images.zip is not a zip file" in response.content.decode()

    archive = zipped(image_folder(tmp_path / "fruit", per_class=2), tmp_path / "fruit.zip")
    response = upload(researcher_client, archive, name="mnist", split="test")
    assert response.status_code == 400
    assert "mnist is a built-in dataset" in html.unescape(response.content.decode())
    import_by_command("fruit", folder=tmp_path / "fruit", user="researcher")
    response = upload(researcher_client, archive, name="fruit", split="test")
    assert response.status_code == 400
    assert "has a test split already" in html.unescape(response.content.decode())

    settings.ADVSTUDY_MAX_DATASET_BYTES = 1000
    response = upload(researcher_client, archive, name="big", split="test")
    assert response.status_code == 400
    assert "zip files of at most 1,000 bytes" in response.content.decode()
    response = researcher_client.post(
        reverse("dataset-import"),
        data=b"x",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(5 * 1024 * 1024),
    )
    assert response.status_code == 413
    assert "Zip files of at most 1,000 bytes" in response.content.decode()
    assert RegisteredDataset.objects.count() == 1
    assert not DatasetImportJob.objects.exists()
    assert stored_uploads() == []


def test_a_zip_of_a_version_zipfile_cannot_read_is_refused_with_a_sentence(
    researcher_client, tmp_path
) -> None:
    archive = zipped(image_folder(tmp_path / "fruit", per_class=2), tmp_path / "fruit.zip")
    data = bytearray(archive.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the central directory's first entry
    data[entry + 6 : entry + 8] = (99).to_bytes(2, "little")  # "version needed": 9.9
    archive.write_bytes(bytes(data))

    response = upload(researcher_client, archive, name="odd", split="test")

    assert response.status_code == 400  # not a 500: zipfile raises NotImplementedError
    assert "fruit.zip is not a zip file" in response.content.decode()
    assert not DatasetImportJob.objects.exists()


def test_the_page_returns_at_once_and_the_worker_imports_the_zip(
    transactional_db, celery_worker_process, tmp_path
) -> None:
    researcher = User.objects.create_user("worker-import", password=PASSWORD, is_staff=True)
    client = Client()
    client.force_login(researcher)
    # Enough images that the worker is still at them when the page has answered.
    archive = zipped(image_folder(tmp_path / "fruit", per_class=200), tmp_path / "fruit.zip")

    job = job_of(upload(client, archive, name="fruit", split="test"))
    answered = job.status
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.get(reverse("dataset-import-status", args=[job.pk])).json()
        seen.add(status["detail"])
        if status["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)

    assert answered in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert status["status"] == "succeeded", status
    assert "600 of 600 images" in seen
    job.refresh_from_db()
    assert job.worker_host
    split = DatasetSplit.objects.get(dataset__name="fruit")
    assert (job.result, split.count, split.imported_by) == (split, 600, researcher)
    assert stored_uploads() == []


def offered_datasets(form: Form) -> list[tuple[str, str]]:
    field = form.fields["dataset"]
    assert isinstance(field, ChoiceField)
    return list(field.choices)  # type: ignore[arg-type]


def test_another_researchers_dataset_is_neither_shown_nor_offered(
    researcher_client, researcher, outsider, tmp_path
) -> None:
    import_by_command("fruit", folder=image_folder(tmp_path / "fruit"), user="researcher")
    import_by_command("public-fruit", folder=tmp_path / "fruit")
    dataset = RegisteredDataset.objects.get(name="fruit")
    other = Client()
    other.force_login(outsider)

    assert other.get(reverse("dataset-detail", args=[dataset.pk])).status_code == 404
    assert "fruit</a>" not in other.get(reverse("dataset-list")).content.decode().replace(
        "public-fruit</a>", ""
    )
    for form in (
        TrainModelForm(researcher=outsider),
        AttackSettingForm(researcher=outsider),
        RegisterModelForm(researcher=outsider),
    ):
        offered = [name for name, _ in offered_datasets(form)]
        assert "fruit" not in offered
        assert "public-fruit" in offered
        assert "mnist" in offered
    mine = [name for name, _ in offered_datasets(AttackSettingForm(researcher=researcher))]
    assert "fruit" in mine
    # Where there is no train split, the new-setting form says so, and refuses an
    # invariance attack that would draw its neighbours from it.
    assert "fruit, public-fruit have no train split" in str(
        AttackSettingForm(researcher=researcher).fields["dataset"].help_text
    )
    form = AttackSettingForm(
        {
            "name": "nn",
            "attack_name": "nn_invariance_linf",
            "config": "{}",
            "dataset": "fruit",
            "source_split": "test",
            "source_start": 0,
            "source_stop": 24,
            "seed": 0,
        },
        researcher=researcher,
    )
    assert not form.is_valid()
    assert "fruit has no train split" in str(form.errors["dataset"])


# A model and attacks on it -------------------------------------------------------------


def tiny_colour_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    ).eval()


def test_a_torchscript_model_registered_on_it_is_attacked_and_its_invariance_examples_made(
    db, tmp_path, settings
) -> None:
    settings.ADVSTUDY_MODEL_CHECK_IMAGES = 24
    # Resized to 12x12: the invariance attack's search fits its bound on a pixels x pixels
    # matrix, slow for 3 x 32 x 32 on a shared CPU.
    import_by_command("fruit", folder=image_folder(tmp_path / "fruit"), resize=12)
    train = image_folder(tmp_path / "train", per_class=6, offset=8)
    import_by_command("fruit", folder=train, split="train", resize=12)
    model_file = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(tiny_colour_cnn(), torch.rand(2, 3, 12, 12)), model_file)
    call_command(
        "register_model", "fruit-net", file=model_file, dataset="fruit", stdout=io.StringIO()
    )
    model = ClassifierModel.objects.get(name="fruit-net")
    assert model.clean_accuracy is not None

    configs: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("fruit-pgd", "pgd_linf", {"eps": 0.03, "steps": 3}),
        (
            "fruit-nn",
            "nn_invariance_linf",
            {
                "eps": 0.3,
                "targets": {"0": [1], "1": [2], "2": [0]},
                "shifts": [0, 1.5],  # a few transformed copies, not Tramèr et al.'s 775
                "rotations": [-2, 0, 2],
            },
        ),
    )
    for name, attack, config in configs:
        setting = services.create_attack_setting(
            name=name,
            attack_name=attack,
            config=config,
            dataset="fruit",
            source_split="test",
            source_range=(0, 24),
            seed=1,
            target_model=model,
        )
        job = services.create_generation_job(setting, 3, chunk_size=3)

        tasks.run_generation_job(job.pk)  # in-process: the worker runs the same functions

        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, job.error
        for example in setting.examples.all():
            stored = np.asarray(Image.open(example.image))
            assert stored.shape == (12, 12, 3)
            assert example.predictions.get(model=model).label in (0, 1, 2)
            assert example.linf_distance is not None
            assert example.linf_distance <= float(config["eps"]) + 1e-6


# Memory --------------------------------------------------------------------------------

# Imports the folder in argv[1] in a fresh process, and prints its peak RSS growth.
IMPORT_AND_MEASURE = """
import json, sys
from pathlib import Path

import django

django.setup()
from attacks import dataset_imports


def status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


before = status_kb("VmRSS")
row = dataset_imports.import_dataset(Path(sys.argv[1]), name="many", split="test")
print(json.dumps({"count": row.count, "growth_mb": (status_kb("VmHWM") - before) / 1024}))
"""


def test_a_folder_of_thousands_of_images_is_imported_in_bounded_memory(
    transactional_db, tmp_path
) -> None:
    """2,400 colour 104x104 images decode to 74 MiB; the import's peak stays far below it,
    since each image is decoded alone and written straight to the file. (A transactional
    test: the child process commits its dataset, which the flush afterwards removes.)"""
    per_class, side = 800, 104
    for label, name in enumerate(CLASSES):
        (tmp_path / "many" / name).mkdir(parents=True)
        encoded = io.BytesIO()
        colour_image(label, 0, side).save(encoded, "PNG")
        for index in range(per_class):
            (tmp_path / "many" / name / f"{index:04d}.png").write_bytes(encoded.getvalue())
    decoded_mb = 3 * per_class * 3 * side * side / 2**20

    result = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_MEASURE, str(tmp_path / "many")],
        cwd=REPOSITORY,
        env={
            **os.environ,
            "DATABASE_URL": database_url_of_the_tests(),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.splitlines()[-1])
    assert measured["count"] == 3 * per_class
    assert decoded_mb > 70
    print(f"peak RSS growth {measured['growth_mb']:.1f} MiB for {decoded_mb:.0f} MiB decoded")
    assert measured["growth_mb"] < 30, measured
    assert configured_dataset("many", "test").images.shape == (3 * per_class, 3, side, side)


def test_the_api_makes_a_setting_on_a_registered_dataset_for_whom_may_use_it(
    researcher, outsider, tmp_path
) -> None:
    import_by_command("fruit", folder=image_folder(tmp_path / "fruit"), user="researcher")
    setting = {
        "name": "fruit-clean",
        "attack_name": "clean",
        "dataset": "fruit",
        "source_start": 0,
        "source_stop": 24,
    }

    refused = token_client(outsider).post("/api/v1/attack-settings/", setting, format="json")
    made = token_client(researcher).post("/api/v1/attack-settings/", setting, format="json")

    assert refused.status_code == 400
    assert "dataset" in refused.json()
    assert made.status_code == 201, made.json()
    assert made.json()["dataset"] == "fruit"


def _with_member_broken(archive: Path, how: str) -> Path:
    """The archive with its last member's data made unreadable by zipfile: a corrupt
    deflate stream, or a compression method zipfile does not know."""
    payload = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as opened:
        member = opened.infolist()[-1]
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    if how == "corrupt":
        payload[start : start + 16] = b"\xff" * 16
    else:  # the method field of the local header and of the central directory
        payload[member.header_offset + 8 : member.header_offset + 10] = (99).to_bytes(2, "little")
        central = payload.rfind(b"PK\x01\x02")
        payload[central + 10 : central + 12] = (99).to_bytes(2, "little")
    archive.write_bytes(bytes(payload))
    return archive


@pytest.mark.parametrize("how", ["corrupt", "unknown method"])
def test_a_zip_member_zipfile_cannot_read_fails_the_job_naming_it(
    upload_eagerly, tmp_path, how
) -> None:
    folder = image_folder(tmp_path / "fruit", per_class=2)
    archive = tmp_path / "fruit.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as writing:
        for file in sorted(folder.rglob("*.*")):
            writing.write(file, file.relative_to(folder).as_posix())
    _with_member_broken(archive, how)

    job = job_of(upload_eagerly(archive, name="broken", split="test"))

    assert job.status == JobStatus.FAILED
    assert "cannot be read from the zip" in job.error
    assert not RegisteredDataset.objects.exists()


def test_a_dataset_made_by_someone_else_during_the_decode_takes_no_split(
    monkeypatch, researcher, outsider, tmp_path
) -> None:
    from attacks import dataset_imports

    decode = dataset_imports.write_images

    def someone_else_registers_the_name_meanwhile(*args: Any, **kwargs: Any) -> Any:
        RegisteredDataset.objects.create(
            name="fruit", classes=["x", "y"], channels=1, size=8, created_by=outsider
        )
        return decode(*args, **kwargs)

    monkeypatch.setattr(dataset_imports, "write_images", someone_else_registers_the_name_meanwhile)
    folder = image_folder(tmp_path / "fruit", per_class=2)

    with pytest.raises(ValidationError, match="exists already"):
        dataset_imports.import_dataset(folder, name="fruit", created_by=researcher)

    assert not DatasetSplit.objects.exists()


def test_a_split_that_is_a_copy_of_the_other_is_refused_by_the_command_and_the_job(
    researcher_client, tmp_path
) -> None:
    # The invariance attack's neighbours come from the train split: it must not hold the
    # test images themselves.
    folder = image_folder(tmp_path / "fruit", per_class=2)
    archive = zipped(folder, tmp_path / "fruit.zip")
    import_by_command("fruit", zip=archive)
    copy = "This zip is the same file as the test split of fruit: a train split must hold"
    with pytest.raises(CommandError, match=copy):
        import_by_command("fruit", zip=archive, split="train")

    mine = zipped(folder, tmp_path / "mine.zip")
    job = job_of(upload(researcher_client, mine, name="mine", split="test"))
    tasks.import_dataset(job.pk)
    again = job_of(upload(researcher_client, mine, name="mine", split="train"))
    tasks.import_dataset(again.pk)

    again.refresh_from_db()
    assert again.status == JobStatus.FAILED
    assert "This zip is the same file as the test split of mine" in again.error
    assert DatasetSplit.objects.filter(split="train").count() == 0


def test_the_datasets_page_links_back_to_the_researchers_unfinished_imports(
    researcher_client, outsider, tmp_path, django_assert_max_num_queries
) -> None:
    archive = zipped(image_folder(tmp_path / "fruit", per_class=2), tmp_path / "fruit.zip")
    queued = job_of(upload(researcher_client, archive, name="fruit", split="test"))
    write, _ = REFUSALS["empty class"]
    bad = zipped(write(tmp_path / "bad"), tmp_path / "bad.zip")
    failed = job_of(upload(researcher_client, bad, name="bad", split="test"))
    tasks.import_dataset(failed.pk)
    other = Client()
    other.force_login(outsider)
    job_of(upload(other, archive, name="theirs", split="test"))

    with django_assert_max_num_queries(5):
        page = researcher_client.get(reverse("dataset-list")).content.decode()

    links = re.findall(r'href="/researcher/datasets/imports/(\d+)/">([^<]+)</a>', page)
    assert links == [(str(failed.pk), "bad/test"), (str(queued.pk), "fruit/test")]
    assert "Failed" in page
    assert "Queued" in page


def test_a_failed_jobs_corrected_zip_link_keeps_its_name_split_and_resize(
    researcher_client, tmp_path
) -> None:
    write, _ = REFUSALS["empty class"]
    bad = zipped(write(tmp_path / "bad"), tmp_path / "bad.zip")
    job = job_of(upload(researcher_client, bad, name="bad", split="train", resize=16))
    tasks.import_dataset(job.pk)

    page = researcher_client.get(reverse("dataset-import-job", args=[job.pk])).content.decode()
    link = re.search(r'href="([^"]+)">Import a corrected zip', page)
    assert link is not None
    form = researcher_client.get(html.unescape(link.group(1))).content.decode()

    assert re.search(r'name="name"[^>]*value="bad"', form)
    assert re.search(r'name="resize"[^>]*value="16"', form)
    assert re.search(r'<option value="train"[^>]*selected', form)


def test_a_second_split_of_another_size_is_told_the_first_ones_size(db, tmp_path) -> None:
    import_by_command("fruit", folder=image_folder(tmp_path / "fruit", per_class=2))
    larger = image_folder(tmp_path / "larger", per_class=2, size=40, offset=10)

    with pytest.raises(CommandError, match="The images of fruit are colour 32x32; these are"):
        import_by_command("fruit", folder=larger, split="train")
    with pytest.raises(CommandError, match="colour 40x40: resize them to 32"):
        import_by_command("fruit", folder=larger, split="train")
