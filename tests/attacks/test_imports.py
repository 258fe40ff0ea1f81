"""Import of published example sets: Tramèr et al.'s released sets, bad input, command, page.

The released sets (tests/data/tramer2020, MIT licence) are MNIST test images;
their figures below were measured on the files, not taken from the paper.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from attacks import imports, services, tasks
from attacks.engine.architectures import predict
from attacks.engine.datasets import load_dataset
from attacks.engine.example_sets import Budget, check_budget
from attacks.engine.images import decode_png, encode_png, quantize_toward
from attacks.engine.zoo import load_zoo_model, zoo_entry, zoo_weights
from attacks.import_report import describe_duplicates
from attacks.models import (
    AttackSetting,
    ClassifierModel,
    Example,
    GenerationJob,
    JobStatus,
    Prediction,
)
from tests.fixtures import clean_mnist_setting

TRAMER = Path(__file__).resolve().parent.parent / "data" / "tramer2020"
ZOO_MODELS = ("mnist-small-cnn-standard", "mnist-small-cnn-ibp-0.4")


def released(name: str) -> np.ndarray:
    return np.load(TRAMER / f"{name}.npy", allow_pickle=False)


def write_npz(folder: Path, file_name: str = "set.npz", **arrays: Any) -> Path:
    path = folder / file_name
    np.savez(path, **arrays)
    return path


def media_files() -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def assert_nothing_stored() -> None:
    assert not AttackSetting.objects.exists()
    assert not GenerationJob.objects.exists()
    assert not Example.objects.exists()
    assert not Prediction.objects.exists()


@pytest.fixture
def zoo_models(db: None) -> list[ClassifierModel]:
    """Two shipped models, and one still training that must not predict."""
    models = [
        services.register_zoo_model(zoo_entry(name), zoo_weights(zoo_entry(name)))[0]
        for name in ZOO_MODELS
    ]
    ClassifierModel.objects.create(
        name="still-training",
        architecture="small_cnn",
        dataset="mnist",
        training_split="train",
        training_start=0,
        training_stop=100,
    )
    return models


@pytest.fixture
def mnist_test():
    return load_dataset("mnist", "test")


# --- the released sets --------------------------------------------------------------------

RELEASED_SETS = [
    # file, indices, claimed budget, count, largest L-inf (levels), largest L0,
    # examples over the budget, largest overshoot (levels)
    ("linf_automated_eps03", "indexs", ("linf", 0.3), 100, 76, 313, 0, 0.0),
    ("linf_automated_eps04", "indexs", ("linf", 0.4), 100, 103, 313, 100, 1.0),
    ("linf_manual_eps04", "linf_manual_indexs", ("linf", 0.4), 50, 102, 212, 0, 0.0),
    ("l0_automated", "indexs", None, 100, 255, 223, None, None),
]


@pytest.mark.parametrize(
    ("file", "indices", "budget", "count", "linf_levels", "l0_max", "exceeding", "overshoot"),
    RELEASED_SETS,
)
def test_released_sets_import_with_measured_distances_and_every_models_prediction(
    tmp_path,
    zoo_models,
    file,
    indices,
    budget,
    count,
    linf_levels,
    l0_max,
    exceeding,
    overshoot,
) -> None:
    # Given the authors' arrays as an .npz
    path = write_npz(
        tmp_path, f"{file}.npz", images=released(file), source_indices=released(indices)
    )
    norm, eps = budget or (None, None)

    # When it is imported
    setting = imports.import_examples(
        path, name=file, dataset="mnist", split="test", norm=norm, eps=eps, citation="Tramèr 2020"
    )

    # Then every example is stored, measured against its clean image, and predicted on
    report = setting.config["import_report"]
    assert setting.kind == AttackSetting.Kind.IMPORTED
    assert setting.examples.count() == report["count"] == count
    assert report["distances"]["linf_max_levels"] == linf_levels
    assert report["distances"]["l0_max"] == l0_max
    assert max(e.linf_distance or 0.0 for e in setting.examples.all()) == pytest.approx(
        linf_levels / 255
    )
    for model in zoo_models:
        assert Prediction.objects.filter(example__setting=setting, model=model).count() == count
    assert not Prediction.objects.filter(model__name="still-training").exists()
    assert (setting.norm, setting.eps) == (norm, eps)
    if budget is None:
        assert report["budget"] is None
    else:
        assert report["budget"]["examples_exceeding"] == exceeding
        assert report["budget"]["max_overshoot"] == overshoot
    job = setting.jobs.get()
    assert (job.status, job.done, job.count) == (JobStatus.SUCCEEDED, count, count)
    assert job.code_version == setting.config["provenance"]["code_version"]
    assert (
        setting.config["provenance"]["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    )


def test_eps04_set_is_stored_as_published_and_its_overshoot_reported(
    tmp_path, zoo_models, mnist_test
) -> None:
    images, indices = released("linf_automated_eps04"), released("indexs")
    path = write_npz(tmp_path, images=images, source_indices=indices)

    setting = imports.import_examples(
        path, name="eps04", dataset="mnist", split="test", norm="linf", eps=0.4
    )

    assert (setting.norm, setting.eps) == ("linf", 0.4)
    # Every image is 1/255 outside the 0.4 ball on between 2 and 91 pixels: 3941 in all.
    budget = setting.config["import_report"]["budget"]
    assert budget == {
        "norm": "linf",
        "eps": 0.4,
        "examples_exceeding": 100,
        "max_overshoot": 1.0,
        "overshoot_unit": "1/255",
        "values_outside_ball": 3941,
    }
    networks = {model.pk: load_zoo_model(model.name) for model in zoo_models}
    for example in setting.examples.prefetch_related("predictions"):
        stored = decode_png(example.image.read())
        assert torch.equal(stored[0], torch.from_numpy(images[example.position]))  # not clipped
        assert example.source_index == int(indices[example.position])
        assert example.source_label == int(mnist_test.labels[example.source_index])
        assert example.linf_distance == pytest.approx(103 / 255)
        for prediction in example.predictions.all():
            expected = predict(networks[prediction.model_id], stored[None].float() / 255)
            assert prediction.label == int(expected[0])


def test_eps03_half_levels_round_toward_the_clean_image(tmp_path, zoo_models, mnist_test) -> None:
    # Given the float set, whose +-76.5/255 perturbations lie half-way between two levels
    images, indices = released("linf_automated_eps03"), released("indexs")
    path = write_npz(tmp_path, images=images, source_indices=indices)

    setting = imports.import_examples(path, name="eps03", dataset="mnist", split="test")

    # Then the ties go toward the clean image: the same bytes the project's own quantiser
    # stores for the same float images, all inside the 0.3 ball
    report = setting.config["import_report"]
    assert report["rounding"] == {"off_grid_values": 7820, "half_level_ties": 7820}
    clean = mnist_test.images[torch.from_numpy(indices)]
    expected = quantize_toward(clean, torch.from_numpy(images[:, None] / 255.0))
    for example in setting.examples.all():
        assert (
            example.image_sha256
            == hashlib.sha256(encode_png(expected[example.position])).hexdigest()
        )
        assert example.linf_distance is not None
        assert example.linf_distance <= 0.3


def test_float_images_on_the_0_1_scale_and_channel_layouts_are_accepted(
    tmp_path, db, mnist_test
) -> None:
    clean = mnist_test.images[:4]
    layouts = {
        "n1hw.npz": clean.numpy().astype(np.float32) / 255,
        "nhw1.npz": np.transpose(clean.numpy(), (0, 2, 3, 1)),
    }
    for file_name, images in layouts.items():
        path = write_npz(tmp_path, file_name, images=images, source_indices=np.arange(4))
        setting = imports.import_examples(path, name=file_name, dataset="mnist", split="test")
        assert list(setting.examples.values_list("l0_distance", flat=True)) == [0, 0, 0, 0]
    assert (
        "float32 on the 0-1 scale (N, C, H, W)"
        in AttackSetting.objects.get(name="n1hw.npz").config["provenance"]["image_form"]
    )


def test_labels_only_set_has_unknown_distances(tmp_path, zoo_models, researcher_client) -> None:
    images = released("linf_manual_eps04")[:5]
    path = write_npz(
        tmp_path,
        images=images,
        source_labels=np.array([4, 9, 4, 2, 7]),
        target_labels=np.array([9, -1, 9, 3, 1]),
    )

    setting = imports.import_examples(
        path, name="labels-only", dataset="mnist", split="test", norm="linf", eps=0.4
    )

    assert setting.config["import_report"]["budget"]["unchecked"] is True
    examples = list(setting.examples.all())
    assert [e.source_index for e in examples] == [None] * 5
    assert [e.linf_distance for e in examples] == [None] * 5
    assert [e.target_label for e in examples] == [9, None, 9, 3, 1]
    assert Prediction.objects.filter(example__setting=setting).count() == 10
    page = researcher_client.get(f"/researcher/settings/{setting.pk}/").content.decode()
    assert "L∞ unknown" in page
    assert "cannot be checked: the source images are unknown" in page


@pytest.mark.parametrize(
    ("norm", "eps", "exceeding", "overshoot", "unit"),
    [
        ("l2", 10 / 255, 1, round(300**0.5 - 10, 6), "1/255"),
        ("l0", 2, 1, 1.0, "values changed"),
        ("linf", 10 / 255, 0, 0.0, "1/255"),
    ],
)
def test_budget_check_measures_on_the_8_bit_grid(norm, eps, exceeding, overshoot, unit) -> None:
    clean = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    stored = clean.clone()
    stored[0, 0, 0, :3] = 10  # three pixels up by 10 levels: L2 17.3, L0 3, L-inf 10

    report = check_budget(clean, stored, Budget(norm, eps))

    assert report["examples_exceeding"] == exceeding
    assert report["max_overshoot"] == pytest.approx(overshoot)
    assert report["overshoot_unit"] == unit


# --- refused input changes nothing --------------------------------------------------------

INDICES = np.arange(100, 110)


def good_arrays() -> dict[str, Any]:
    return {
        "images": released("linf_automated_eps04")[:10],
        "source_indices": released("indexs")[:10],
    }


def nan_images() -> np.ndarray:
    images = released("linf_automated_eps03")[:10].copy()
    images[3, 4, 5] = np.nan
    return images


def same_target(arrays: dict[str, np.ndarray], mnist_test) -> np.ndarray:
    labels = mnist_test.labels[torch.from_numpy(arrays["source_indices"])].numpy()
    targets = (labels + 1) % 10
    targets[6] = labels[6]
    return targets


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda a, d: {"source_indices": a["source_indices"][:9]},
            "source_indices has 9 entries for 10",
        ),
        (
            lambda a, d: {"source_indices": np.r_[a["source_indices"][:9], 10000]},
            "1 source indices lie outside mnist/test",
        ),
        (
            lambda a, d: {"source_indices": np.r_[a["source_indices"][:9], -1]},
            "source indices lie outside",
        ),
        (
            lambda a, d: {"images": a["images"][:, :27, :27]},
            r"shape \(10, 27, 27\); this dataset needs",
        ),
        (lambda a, d: {"images": a["images"].reshape(10, 784)}, "shape"),
        (lambda a, d: {"images": nan_images()}, "1 NaN or infinite values"),
        (lambda a, d: {"images": a["images"].astype(np.float32) * 2}, "values from 0 to 510"),
        (lambda a, d: {"images": a["images"].astype(np.int64)}, "must be uint8 or floating point"),
        (
            lambda a, d: {"target_labels": same_target(a, d)},
            "1 target labels equal their source label; the first at position 6",
        ),
        (lambda a, d: {"target_labels": np.full(10, 10)}, "target label 10 is not a class"),
        (
            lambda a, d: {"source_labels": np.full(10, 3)},
            "position 0: source label 3, but mnist/test image",
        ),
        (lambda a, d: {"extra": np.zeros(3)}, "unknown arrays extra"),
    ],
)
def test_bad_sets_are_refused_and_change_nothing(
    tmp_path, zoo_models, mnist_test, change, message
) -> None:
    arrays = good_arrays()
    arrays.update(change(arrays, mnist_test))
    path = write_npz(tmp_path, **arrays)
    before = media_files()

    with pytest.raises(ValidationError, match=message):
        imports.import_examples(path, name="bad", dataset="mnist", split="test")

    assert_nothing_stored()
    assert media_files() == before


def test_a_set_without_sources_or_images_is_refused(tmp_path, db) -> None:
    no_sources = write_npz(tmp_path, "a.npz", images=good_arrays()["images"])
    with pytest.raises(ValidationError, match="give source_indices, or source_labels"):
        imports.import_examples(no_sources, name="bad", dataset="mnist", split="test")
    single = tmp_path / "single.npy"
    np.save(single, good_arrays()["images"])
    with pytest.raises(ValidationError, match=r"import an \.npz, a \.zip or a folder"):
        imports.import_examples(single, name="bad", dataset="mnist", split="test")
    renamed = tmp_path / "renamed.npz"
    renamed.write_bytes(single.read_bytes())
    with pytest.raises(ValidationError, match="got a single array"):
        imports.import_examples(renamed, name="bad", dataset="mnist", split="test")
    assert_nothing_stored()


def test_a_failure_while_storing_rolls_back_and_deletes_the_written_images(
    tmp_path, zoo_models, monkeypatch
) -> None:
    path = write_npz(tmp_path, **good_arrays())
    before = media_files()

    def crash(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports, "_finish", crash)  # after every image and row is written
    with pytest.raises(RuntimeError, match="disk full"):
        imports.import_examples(path, name="crash", dataset="mnist", split="test")

    assert_nothing_stored()
    assert media_files() == before


def test_reimport_under_the_same_name_is_refused_and_a_new_name_noted(tmp_path, db) -> None:
    path = write_npz(tmp_path, **good_arrays())
    imports.import_examples(path, name="eps04", dataset="mnist", split="test")

    with pytest.raises(ValidationError, match="already imported from this file"):
        imports.import_examples(path, name="eps04", dataset="mnist", split="test")
    other = write_npz(
        tmp_path, "other.npz", **{**good_arrays(), "images": good_arrays()["images"][::-1].copy()}
    )
    with pytest.raises(ValidationError, match="an attack setting named 'eps04' already exists"):
        imports.import_examples(other, name="eps04", dataset="mnist", split="test")
    again = imports.import_examples(path, name="eps04-again", dataset="mnist", split="test")

    assert again.config["import_report"]["same_file_as"] == ["eps04"]
    assert Example.objects.count() == 20


def test_generation_is_never_run_for_an_imported_setting(tmp_path, db) -> None:
    setting = imports.import_examples(
        write_npz(tmp_path, **good_arrays()), name="eps04", dataset="mnist", split="test"
    )
    job = setting.jobs.get()
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)  # by hand, say

    tasks.run_generation_job(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert setting.examples.count() == 10
    with pytest.raises(ValidationError, match="has no attack to run"):
        services.create_generation_job(setting, 1)


# --- PNGs plus a CSV ----------------------------------------------------------------------


def write_png_folder(folder: Path, rows: list[dict[str, object]], images: np.ndarray) -> Path:
    folder.mkdir()
    for row, image in zip(rows, images, strict=True):
        (folder / str(row["file_name"])).write_bytes(encode_png(torch.from_numpy(image)[None]))
    with (folder / "examples.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def png_rows(mnist_test) -> list[dict[str, object]]:
    indices = released("linf_manual_indexs")[:6]
    labels = mnist_test.labels[torch.from_numpy(indices)].tolist()
    return [
        {
            "file_name": f"x{i}.png",
            "source_index": int(index),
            "target_label": "" if i % 2 else (label + 1) % 10,
        }
        for i, (index, label) in enumerate(zip(indices, labels, strict=True))
    ]


def test_png_folder_with_a_csv_imports_like_an_npz(tmp_path, zoo_models, mnist_test) -> None:
    images = released("linf_manual_eps04")[:6]
    folder = write_png_folder(tmp_path / "manual", png_rows(mnist_test), images)

    setting = imports.import_examples(
        folder, name="manual-png", dataset="mnist", split="test", norm="linf", eps=0.4
    )

    examples = list(setting.examples.all())
    assert [decode_png(e.image.read())[0].tolist() for e in examples] == images.tolist()
    assert [e.target_label is None for e in examples] == [False, True] * 3
    assert setting.config["provenance"]["file_format"] == "png-csv-folder"
    assert setting.config["import_report"]["budget"]["examples_exceeding"] == 0
    assert Prediction.objects.filter(example__setting=setting).count() == 12


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda folder: (folder / "stray.png").write_bytes((folder / "x0.png").read_bytes()),
            "1 PNG files are not listed in the CSV: stray.png",
        ),
        (lambda folder: (folder / "x3.png").unlink(), "lists files that are not there: x3.png"),
        (
            lambda folder: (folder / "x2.png").write_bytes(
                encode_png(torch.zeros(3, 28, 28, dtype=torch.uint8))
            ),
            "x2.png is a mode RGB PNG",
        ),
        (
            lambda folder: (folder / "examples.csv").write_text(
                (folder / "examples.csv").read_text().replace(",159,", ",abc,")
            ),
            "CSV line 2: source_index 'abc' is not an integer",
        ),
        (
            lambda folder: (folder / "second.csv").write_text("file_name\n"),
            "exactly one .csv file, found 2",
        ),
    ],
)
def test_bad_png_folders_are_refused(tmp_path, db, mnist_test, damage, message) -> None:
    folder = write_png_folder(
        tmp_path / "set", png_rows(mnist_test), released("linf_manual_eps04")[:6]
    )
    damage(folder)

    with pytest.raises(ValidationError, match=message):
        imports.import_examples(folder, name="bad", dataset="mnist", split="test")

    assert_nothing_stored()


def test_png_folder_may_give_labels_only_and_a_bad_row_is_refused(tmp_path, db) -> None:
    rows = [{"file_name": f"y{i}.png", "source_label": label} for i, label in enumerate([4, 9])]
    folder = write_png_folder(tmp_path / "labels", rows, released("linf_manual_eps04")[:2])

    setting = imports.import_examples(folder, name="labels", dataset="mnist", split="test")

    assert list(setting.examples.values_list("source_label", "source_index")) == [
        (4, None),
        (9, None),
    ]
    with (folder / "examples.csv").open("a") as handle:
        handle.write("y0.png,4,extra\n")
    with pytest.raises(ValidationError, match="CSV line 4 has 3 cells, not 2"):
        imports.import_examples(folder, name="labels-2", dataset="mnist", split="test")


# --- the command --------------------------------------------------------------------------


def test_command_imports_and_reports_the_overshoot(tmp_path, zoo_models) -> None:
    path = write_npz(
        tmp_path,
        "linf_automated_eps04.npz",
        images=released("linf_automated_eps04"),
        source_indices=released("indexs"),
    )
    output = StringIO()

    call_command(
        "import_examples",
        str(path),
        "--name",
        "tramer-eps04",
        "--dataset",
        "mnist",
        "--split",
        "test",
        "--eps",
        "0.4",
        "--norm",
        "linf",
        "--citation",
        "Tramèr et al. 2020, released linf_automated_eps04.npy",
        stdout=output,
        stderr=StringIO(),
    )

    text = output.getvalue()
    assert "Imported 'tramer-eps04'" in text
    assert "100 examples from linf_automated_eps04.npz" in text
    assert (
        "(linf eps 0.4) is exceeded by 100 of 100 examples, by at most 1/255 "
        "(3941 pixel values outside the ball)" in text
    )
    assert "Model mnist-small-cnn-standard predicts the source label on" in text
    setting = AttackSetting.objects.get(name="tramer-eps04")
    assert setting.config["provenance"]["citation"].startswith("Tramèr et al. 2020")


def test_command_refuses_a_bad_set_with_the_reason(tmp_path, db) -> None:
    path = write_npz(tmp_path, **{**good_arrays(), "source_indices": INDICES[:3]})
    with pytest.raises(CommandError, match="source_indices has 3 entries for 10 images"):
        call_command(
            "import_examples", str(path), "--name", "bad", stdout=StringIO(), stderr=StringIO()
        )
    assert_nothing_stored()


# --- the page -----------------------------------------------------------------------------


def npz_upload(arrays: dict[str, Any], name: str = "eps04.npz") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/octet-stream")


def upload_form(**changes: object) -> dict[str, object]:
    form: dict[str, object] = {
        "file": npz_upload(good_arrays()),
        "name": "uploaded",
        "dataset": "mnist",
        "split": "test",
        "citation": "Tramèr et al. 2020",
        "norm": "linf",
        "eps": "0.4",
        "pixel_scale": "",
    }
    form.update(changes)
    return form


def test_researcher_uploads_a_set_and_sees_its_report(
    researcher_client: Client, researcher, zoo_models
) -> None:
    assert (
        'enctype="multipart/form-data"'
        in researcher_client.get("/researcher/settings/import/").content.decode()
    )

    response = researcher_client.post("/researcher/settings/import/", upload_form())

    setting = AttackSetting.objects.get(name="uploaded")
    assert response.status_code == 302
    assert response["Location"] == f"/researcher/settings/{setting.pk}/"
    assert setting.config["provenance"]["imported_by"] == researcher.username
    assert setting.jobs.get().created_by == researcher
    page = researcher_client.get(response["Location"]).content.decode()
    assert "is exceeded by 10 of 10 examples, by at most 1/255" in page
    assert "<th>Claimed budget</th><td>L-inf eps 0.4</td>" in page
    assert "Tramèr et al. 2020" in page
    assert "Queue generation job" not in page


def test_researcher_uploads_a_zip_of_pngs(
    researcher_client: Client, db, mnist_test, tmp_path
) -> None:
    folder = write_png_folder(
        tmp_path / "set", png_rows(mnist_test), released("linf_manual_eps04")[:6]
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"set/{path.name}")
    upload = SimpleUploadedFile("manual.zip", buffer.getvalue())

    response = researcher_client.post(
        "/researcher/settings/import/", upload_form(file=upload, norm="", eps="")
    )

    assert response.status_code == 302
    assert AttackSetting.objects.get(name="uploaded").examples.count() == 6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"eps": ""}, "Give the eps the set claims in its norm, or no norm."),
        (
            {"file": npz_upload({**good_arrays(), "source_indices": INDICES[:4]})},
            "source_indices has 4 entries",
        ),
        ({"file": SimpleUploadedFile("notes.txt", b"hello")}, "import an .npz, a .zip or a folder"),
    ],
)
def test_bad_upload_is_a_400_that_stores_nothing(
    researcher_client: Client, db, changes, message
) -> None:
    before = media_files()

    response = researcher_client.post("/researcher/settings/import/", upload_form(**changes))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert_nothing_stored()
    assert media_files() == before


def test_import_page_needs_a_signed_in_researcher(db, django_user_model) -> None:
    anonymous = Client()
    assert anonymous.get("/researcher/settings/import/").status_code == 302
    assert anonymous.post("/researcher/settings/import/", upload_form()).status_code == 302
    annotator_account = Client()
    annotator_account.force_login(django_user_model.objects.create_user("someone"))
    assert annotator_account.get("/researcher/settings/import/").status_code == 403
    assert annotator_account.post("/researcher/settings/import/", upload_form()).status_code == 403
    assert_nothing_stored()


# --- duplicate images ---------------------------------------------------------------------

INDEXS = released("indexs")


def test_the_l0_set_reports_its_two_identical_images_in_the_command_and_on_the_page(
    tmp_path, db, researcher_client: Client
) -> None:
    # Given Tramèr et al.'s L0 set, whose images 44 and 45 are the same array
    path = write_npz(
        tmp_path, "l0_automated.npz", images=released("l0_automated"), source_indices=INDEXS
    )
    output = StringIO()

    # When it is imported with the command
    call_command("import_examples", str(path), "--name", "tramer-l0", stdout=output)

    # Then the summary names both positions, the report keeps them, and their PNGs are one
    sentence = (
        "2 images are pixel-identical to another image of the set, at positions "
        "(counted from 0) 44 and 45: each copy would be labelled as an example of its own."
    )
    assert sentence in output.getvalue()
    setting = AttackSetting.objects.get(name="tramer-l0")
    assert setting.config["import_report"]["duplicates"] == [[44, 45]]
    checksums = dict(setting.examples.values_list("position", "image_sha256"))
    assert checksums[44] == checksums[45]
    assert len(set(checksums.values())) == 99
    page = researcher_client.get(f"/researcher/settings/{setting.pk}/").content.decode()
    assert sentence in page


def test_a_set_without_copies_says_so_and_groups_of_copies_are_named_in_file_order() -> None:
    images = torch.from_numpy(released("linf_manual_eps04")[:6, None])
    assert imports.duplicate_positions(images) == []
    assert describe_duplicates([]) == "No two images are identical."

    copies = images[[3, 0, 3, 1, 0, 3]]  # a triple and a pair

    assert imports.duplicate_positions(copies) == [[0, 2, 5], [1, 4]]
    assert describe_duplicates([[0, 2, 5], [1, 4]]).startswith(
        "5 images are pixel-identical to another image of the set, at positions "
        "(counted from 0) 0, 2 and 5; 1 and 4:"
    )


# --- psychometric families ----------------------------------------------------------------

TRAMER_LINF = {  # name -> (file, indices, eps)
    "auto-0.3": ("linf_automated_eps03", INDEXS, 0.3),
    "auto-0.4": ("linf_automated_eps04", INDEXS, 0.4),
    "manual-0.4": ("linf_manual_eps04", released("linf_manual_indexs"), 0.4),
}


def import_tramer(
    folder: Path, name: str, family: str = "", created_by: User | None = None
) -> AttackSetting:
    file, indices, eps = TRAMER_LINF[name]
    path = write_npz(folder, f"{file}.npz", images=released(file), source_indices=indices)
    return imports.import_examples(
        path,
        name=name,
        dataset="mnist",
        split="test",
        norm="linf",
        eps=eps,
        family=family,
        created_by=created_by,
    )


def test_the_command_puts_an_import_in_the_family_it_names(tmp_path, db) -> None:
    file, indices, _ = TRAMER_LINF["auto-0.3"]
    path = write_npz(tmp_path, f"{file}.npz", images=released(file), source_indices=indices)
    output = StringIO()

    call_command(
        "import_examples",
        str(path),
        *("--name", "auto-0.3", "--norm", "linf", "--eps", "0.3"),
        *("--family", " tramer-automated "),
        stdout=output,
    )

    assert "Imported 'auto-0.3' as setting" in output.getvalue()
    assert "in family 'tramer-automated'." in output.getvalue()
    assert AttackSetting.objects.get(name="auto-0.3").family == "tramer-automated"
    assert "No two images are identical." in output.getvalue()


def test_a_family_needs_a_claimed_budget_and_one_norm(tmp_path, db) -> None:
    path = write_npz(tmp_path, **good_arrays())
    with pytest.raises(ValidationError, match="claims no budget has no eps"):
        imports.import_examples(path, name="a", dataset="mnist", split="test", family="mine")
    imports.import_examples(
        path, name="b", dataset="mnist", split="test", norm="linf", eps=0.4, family="mine"
    )

    with pytest.raises(ValidationError, match="share their dataset and norm"):
        imports.import_examples(
            path, name="c", dataset="mnist", split="test", norm="l2", eps=3.0, family="mine"
        )

    assert list(AttackSetting.objects.values_list("name", "family")) == [("b", "mine")]


def test_the_upload_page_takes_a_family(researcher_client: Client, db) -> None:
    response = researcher_client.post(
        "/researcher/settings/import/", upload_form(family="tramer-automated")
    )

    setting = AttackSetting.objects.get(name="uploaded")
    assert response.status_code == 302
    assert setting.family == "tramer-automated"
    page = researcher_client.get(response["Location"]).content.decode()
    assert '<td data-family="tramer-automated">tramer-automated</td>' in page


def test_a_researcher_names_and_clears_a_family_on_the_settings_page(
    tmp_path, researcher, researcher_client: Client
) -> None:
    setting = import_tramer(tmp_path, "manual-0.4", created_by=researcher)
    url = f"/researcher/settings/{setting.pk}/family/"
    assert (
        "none: fitted on no psychometric curve"
        in researcher_client.get(f"/researcher/settings/{setting.pk}/").content.decode()
    )

    response = researcher_client.post(url, {"family": "tramer-manual"})

    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.family == "tramer-manual"
    assert researcher_client.post(url, {"family": ""}).status_code == 302
    setting.refresh_from_db()
    assert setting.family == ""


def test_a_family_the_page_refuses_is_a_400_with_the_reason_that_changes_nothing(
    tmp_path, researcher, researcher_client: Client
) -> None:
    unbudgeted = imports.import_examples(
        write_npz(tmp_path, **good_arrays()),
        name="no-budget",
        dataset="mnist",
        split="test",
        created_by=researcher,
    )
    generated = clean_mnist_setting("clean")
    AttackSetting.objects.filter(pk=generated.pk).update(created_by=researcher)  # theirs to edit

    refused = {
        setting.name: researcher_client.post(
            f"/researcher/settings/{setting.pk}/family/", {"family": "mine"}
        )
        for setting in (unbudgeted, generated)
    }

    assert {name: response.status_code for name, response in refused.items()} == {
        "no-budget": 400,
        "clean": 400,
    }
    assert "claims no budget has no eps" in refused["no-budget"].content.decode()
    assert "clean is generated: its family is every setting that differs from it only in eps" in (
        refused["clean"].content.decode()
    )
    assert set(AttackSetting.objects.values_list("family", flat=True)) == {""}


def test_the_api_shows_a_settings_family_and_patch_changes_it_alone(
    tmp_path, researcher, db
) -> None:
    setting = import_tramer(tmp_path, "auto-0.4", family="tramer", created_by=researcher)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=researcher).key}")
    url = f"/api/v1/attack-settings/{setting.pk}/"
    assert api.get(url).json()["family"] == "tramer"

    response = api.patch(url, {"family": "tramer-automated", "name": "renamed"}, format="json")

    assert response.status_code == 200
    assert response.json()["family"] == "tramer-automated"
    setting.refresh_from_db()
    assert (setting.name, setting.family) == ("auto-0.4", "tramer-automated")
    too_long = api.patch(url, {"family": "x" * 61}, format="json")
    assert too_long.status_code == 400
    assert "family" in too_long.json()
    other_norm = imports.import_examples(
        write_npz(tmp_path, "l2.npz", **good_arrays()),
        name="l2",
        dataset="mnist",
        split="test",
        norm="l2",
        eps=3.0,
        created_by=researcher,
    )
    refused = api.patch(
        f"/api/v1/attack-settings/{other_norm.pk}/", {"family": "tramer-automated"}, format="json"
    )
    assert refused.status_code == 400
    assert "share their dataset and norm" in refused.json()["non_field_errors"][0]
    other_norm.refresh_from_db()
    assert other_norm.family == ""
