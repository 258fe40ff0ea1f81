"""A colour ImageFolder of the researcher's own, from the zip to the export.

The researcher registers a zip of 3 classes of RGB images (and its train split) on the
page, trains a model on it, attacks it with PGD on the real worker, builds a study whose
answers are the folders' names, an annotator labels it in a real browser by those names,
and the export carries them.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from attacks.models import Example, RegisteredDataset
from labeling.models import Assignment, Label
from study.models import Study
from tests.attacks.test_dataset_import import CLASSES, image_folder, zipped
from tests.browser.test_annotator_flow import shown_assignment, wait_until_answerable
from tests.test_end_to_end import created_id, form_post, generate, sign_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def upload_zip(
    session: requests.Session, base: str, path: Path, **fields: str
) -> requests.Response:
    url = f"{base}/researcher/datasets/import/"
    session.get(url)
    with path.open("rb") as handle:
        return session.post(
            url,
            data={**fields, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            files={"archive": (path.name, handle, "application/zip")},
            headers={"Referer": url},
        )


def import_zip(
    session: requests.Session, base: str, path: Path, **fields: str
) -> requests.Response:
    """Upload the zip, follow its import job in the worker to its end, open the dataset."""
    response = upload_zip(session, base, path, **fields)
    job_id = created_id(response, r"/datasets/imports/(\d+)/$")
    imported = wait_for(session, f"{base}/researcher/datasets/imports/{job_id}/status.json")
    return session.get(f"{base}/researcher/datasets/{imported['dataset_id']}/")


def test_a_colour_imagefolder_goes_from_its_zip_to_the_export(
    live_server, celery_worker_process, researcher, page: Page, tmp_path
) -> None:
    base = live_server.url
    session = sign_in(base)
    test_zip = zipped(image_folder(tmp_path / "test"), tmp_path / "fruit.zip")
    train_zip = zipped(image_folder(tmp_path / "train", 16, offset=8), tmp_path / "train.zip")

    response = import_zip(session, base, test_zip, name="fruit", split="test")
    dataset_id = created_id(response, r"/datasets/(\d+)/$")
    assert "No train split" in response.text
    response = import_zip(session, base, train_zip, name="fruit", split="train")
    assert created_id(response, r"/datasets/(\d+)/$") == dataset_id
    assert "No train split" not in response.text
    dataset = RegisteredDataset.objects.get(pk=dataset_id)
    assert dataset.created_by == researcher
    assert [split.count for split in dataset.splits.order_by("split")] == [24, 48]

    response = form_post(
        session,
        f"{base}/researcher/models/new/",
        {
            "name": "fruit-cnn",
            "architecture": "small_cnn",
            "dataset": "fruit",
            "training_split": "train",
            "training_start": 0,
            "training_stop": 48,
            "evaluation_split": "test",
            "evaluation_start": 0,
            "evaluation_stop": 24,
            "epochs": 5,
            "batch_size": 16,
            "learning_rate": 0.01,
            "recipe": "standard",
            "eps": 0.1,
            "seed": 0,
        },
    )
    model_id = created_id(response, r"/models/(\d+)/$")
    trained = wait_for(session, f"{base}/researcher/models/{model_id}/status.json")
    assert trained["clean_accuracy"] is not None

    settings = {}
    for name, attack, config, model in (
        ("fruit-pgd", "pgd_linf", '{"eps": 0.03, "steps": 5}', model_id),
        ("fruit-clean", "clean", "{}", ""),
    ):
        response = form_post(
            session,
            f"{base}/researcher/settings/new/",
            {
                "name": name,
                "attack_name": attack,
                "config": config,
                "dataset": "fruit",
                "source_split": "test",
                "source_start": 0,
                "source_stop": 24,
                "target_model": model,
                "seed": 3,
            },
        )
        settings[name] = created_id(response, r"/settings/(\d+)/$")
    generate(session, base, settings["fruit-pgd"], 4)
    generate(session, base, settings["fruit-clean"], 2)
    examples = Example.objects.filter(setting__dataset="fruit")
    assert examples.count() == 6
    assert all(example.predictions.filter(model_id=model_id).exists() for example in examples)
    first = examples.first()
    assert first is not None
    assert first.image.read()[:8] == b"\x89PNG\r\n\x1a\n"

    response = form_post(
        session,
        f"{base}/researcher/studies/new/",
        {
            "title": "Fruit",
            "instructions": "Which fruit?",
            f"count_{settings['fruit-pgd']}": 4,
            "control_setting": settings["fruit-clean"],
            "control_count": 2,
            "items_per_participant": 6,
            "labels_per_item": 1,
            "classes": [0, 1, 2],
            "seed": 5,
            "presentation": "unlimited",
            "recruitment": "open",
            "max_attention_failures": 0,
            "min_response_ms": 0,
            "max_fast_responses": 0,
            "lease_minutes": 10,
        },
    )
    study_id = created_id(response, r"/studies/(\d+)/$")
    session.post(
        f"{base}/researcher/studies/{study_id}/status/",
        data={
            "status": "live",
            "confirm": "yes",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": base},
    )
    study = Study.objects.get(pk=study_id)
    assert study.status == Study.Status.LIVE
    assert [choice["text"] for choice in study.label_choices][:3] == list(CLASSES)

    page.goto(f"{base}/s/{study.join_token}/")
    page.get_by_role("button", name="I agree").click()
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/label/")
    for _ in range(6):
        wait_until_answerable(page)
        for name in CLASSES:
            expect(page.get_by_role("button", name=re.compile(rf"\b{name}\b"))).to_be_visible()
        assert page.evaluate("document.getElementById('stimulus').naturalWidth") == 32
        example = Assignment.objects.get(public_id=shown_assignment(page)).item.example
        page.get_by_role("button", name=re.compile(rf"\b{CLASSES[example.source_label]}\b")).click()
        page.wait_for_timeout(150)
    page.wait_for_url("**/done/")
    assert Label.objects.count() == 6

    annotations = session.get(f"{base}/researcher/studies/{study_id}/exports/annotations.csv")
    assert annotations.status_code == 200
    rows = list(csv.DictReader(io.StringIO(annotations.text)))
    assert len(rows) == 6
    assert {row["value"] for row in rows} <= {"0", "1", "2"}
    assert all(row["label_class"] == CLASSES[int(row["value"])] for row in rows)
    hf = session.get(f"{base}/researcher/studies/{study_id}/exports/examples.hf")
    with zipfile.ZipFile(io.BytesIO(hf.content)) as archive:
        card = archive.read("README.md").decode()
    for name in CLASSES:
        assert name in card
    for split in dataset.splits.all():  # the zips the researcher registered, by SHA-256
        assert f"`{split.archive_sha256}`" in card
