"""The researcher's forms: each error once, beside its field, in plain words.

A refusal names the attack and the data as the pages do, never a config class, an
exception's class or a path on the server.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from attacks.forms import TrainModelForm
from attacks.models import AttackSetting, ClassifierModel
from tests.attacks.test_imports import good_arrays, npz_upload, upload_form
from tests.attacks.test_views import setting_form

pytestmark = pytest.mark.django_db


class FormPage(HTMLParser):
    """The error lists of a form page, each with its id and the field wrapper it sits in,
    and every input's aria-describedby."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.errors: list[tuple[str, str, str]] = []  # (list id, field wrapper, message)
        self.described_by: dict[str, list[str]] = {}
        self._field = ""
        self._list_id: str | None = None
        self._item: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if tag == "div" and "data-field" in named:
            self._field = named["data-field"]
        if tag == "ul" and "errorlist" in named.get("class", ""):
            self._list_id = named.get("id", "")
        if tag == "li" and self._list_id is not None:
            self._item = []
        if tag in ("input", "textarea", "select") and "id" in named:
            self.described_by[named["id"]] = named.get("aria-describedby", "").split()

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._item is not None and self._list_id is not None:
            self.errors.append((self._list_id, self._field, "".join(self._item).strip()))
            self._item = None
        elif tag == "ul":
            self._list_id = None
        elif tag == "div":
            self._field = ""

    def handle_data(self, data: str) -> None:
        if self._item is not None:
            self._item.append(data)

    def messages(self) -> list[str]:
        return [message for _, _, message in self.errors]


def assert_once_beside_fields(page: FormPage, html: str) -> None:
    """Each message shows once, in its field's own list, which the field's input names."""
    for list_id, field, message in page.errors:
        assert html.count(message.replace('"', "&quot;").replace("'", "&#x27;")) == 1, message
        if list_id.endswith("-errors"):
            assert field == "", message  # the form's own errors are at the top
            continue
        assert list_id == f"id_{field}_error", message
        assert list_id in page.described_by[f"id_{field}"], message


def test_a_bad_setting_shows_each_error_once_beside_its_field(
    researcher_client: Client, trained_model: ClassifierModel
) -> None:
    response = researcher_client.post(
        "/researcher/settings/new/",
        setting_form(trained_model, config='{"epsilon": 0.3}', source_stop=20000),
    )

    html = response.content.decode()
    page = FormPage(html)
    assert response.status_code == 400
    assert [(field, message) for _, field, message in page.errors] == [
        (
            "config",
            'PGD (L∞) has no option "epsilon" (did you mean "eps"?); its options are eps, '
            "step_size, steps, restarts, random_start, targeted, target_class.",
        ),
        (
            "source_stop",
            "MNIST's test split has 10,000 images: the source images must end at 10,000 or before.",
        ),
    ]
    assert_once_beside_fields(page, html)
    assert not AttackSetting.objects.exists()


def test_a_refusal_of_the_whole_form_shows_once_at_the_top(
    researcher_client: Client, trained_model: ClassifierModel
) -> None:
    researcher_client.post("/researcher/settings/new/", setting_form(trained_model))

    response = researcher_client.post("/researcher/settings/new/", setting_form(trained_model))

    html = response.content.decode()
    page = FormPage(html)
    assert response.status_code == 400
    assert page.errors == [("form-errors", "", "An attack setting is already called 'pgd'.")]
    assert_once_beside_fields(page, html)
    assert AttackSetting.objects.count() == 1


def training_form(**changes: object) -> dict[str, object]:
    """The training form as the page offers it, named, with ``changes``."""
    form = TrainModelForm()
    data = {name: field.initial for name, field in form.fields.items()}
    data.update(name="cnn", architecture="small_cnn", dataset="mnist")
    data.update(changes)
    return {key: "" if value is None else value for key, value in data.items()}


def test_the_training_form_defaults_work_on_the_shipped_data() -> None:
    form = TrainModelForm(training_form())

    assert form.is_valid(), form.errors
    data = form.cleaned_data
    assert (data["training_split"], data["training_start"], data["training_stop"]) == (
        "test",
        0,
        8000,
    )
    assert (data["evaluation_split"], data["evaluation_start"], data["evaluation_stop"]) == (
        "test",
        8000,
        10000,
    )


def test_the_training_form_says_which_data_is_here_and_which_is_missing(
    researcher_client: Client,
) -> None:
    page = researcher_client.get("/researcher/models/new/").content.decode()
    assert "data on this server: MNIST: test (10,000 images)" in page

    response = researcher_client.post(
        "/researcher/models/new/", training_form(training_split="train", training_stop=60000)
    )

    html = response.content.decode()
    errors = FormPage(html)
    assert response.status_code == 400
    assert [(field, message) for _, field, message in errors.errors] == [
        (
            "training_split",
            "MNIST's train split is not on this server (only the test split's 10,000 images "
            "ship with advstudy).",
        )
    ]
    assert_once_beside_fields(errors, html)
    assert not ClassifierModel.objects.exists()


def test_overlapping_training_and_evaluation_images_are_refused_beside_the_evaluation(
    researcher_client: Client,
) -> None:
    response = researcher_client.post(
        "/researcher/models/new/", training_form(evaluation_start=7000)
    )

    errors = FormPage(response.content.decode())
    assert [(field, message) for _, field, message in errors.errors] == [
        (
            "evaluation_start",
            "The evaluation images [7,000, 10,000) overlap the training images [0, 8,000): "
            "evaluate on images the model was not trained on.",
        )
    ]


# A server path (two or more segments), a Python class or exception name, a repr.
LEAKS = re.compile(
    r"(/[A-Za-z_][\w.-]*){2,}|sample_data|\w+(Config|Error|Exception|Unavailable)\b|__\w+__|<class|"
    r"Traceback|ADVSTUDY_"
)


def torch_pickle() -> SimpleUploadedFile:
    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)
    return SimpleUploadedFile("model.pt", buffer.getvalue())


BAD_SETTINGS = [
    {"config": '{"epsilon": 0.3}'},
    {"config": '{"eps": "big"}'},
    {"config": '{"eps": -1, "steps": 0}'},
    {"config": '{"shifts": 3}', "attack_name": "nn_invariance_linf"},
    {"config": "{not json"},
    {"config": "[1]"},
    {"config": '{"targeted": true, "target_class": 10}'},
    {"source_split": "train"},
    {"source_start": 500, "source_stop": 100},
    {"dataset": "cifar10"},
    {"attack_name": "evil"},
    {"target_model": ""},
]


@pytest.mark.parametrize("changes", BAD_SETTINGS)
def test_no_setting_error_names_a_class_or_a_path(
    researcher_client: Client, trained_model: ClassifierModel, changes: dict[str, str]
) -> None:
    response = researcher_client.post(
        "/researcher/settings/new/", setting_form(trained_model, **changes)
    )

    assert_plain_refusal(response.status_code, response.content.decode())


@pytest.mark.parametrize(
    "changes",
    [
        {"training_split": "train", "training_stop": 60000},
        {"dataset": "fashion_mnist"},
        {"evaluation_stop": 20000},
        {"training_start": 9000, "training_stop": 10},
        {"evaluation_start": 0},
    ],
)
def test_no_training_error_names_a_class_or_a_path(
    researcher_client: Client, changes: dict[str, object]
) -> None:
    response = researcher_client.post("/researcher/models/new/", training_form(**changes))

    assert_plain_refusal(response.status_code, response.content.decode())


@pytest.mark.parametrize(
    "changes",
    [
        lambda: {"eps": ""},
        lambda: {"norm": ""},
        lambda: {"file": SimpleUploadedFile("notes.txt", b"hello")},
        lambda: {"file": npz_upload({**good_arrays(), "source_indices": [1, 2]})},
        lambda: {"dataset": "cifar10"},
        lambda: {"split": "train"},
    ],
)
def test_no_import_error_names_a_class_or_a_path(researcher_client: Client, changes) -> None:
    response = researcher_client.post("/researcher/settings/import/", upload_form(**changes()))

    assert_plain_refusal(response.status_code, response.content.decode())


@pytest.mark.parametrize(
    "changes",
    [
        lambda: {"file": SimpleUploadedFile("model.pt", b"not a model at all")},
        lambda: {"file": torch_pickle()},
        lambda: {"file": SimpleUploadedFile("model.pt", b"")},
        lambda: {"normalize": "0.1,0.2,0.3"},
        lambda: {"dataset": "cifar10"},
    ],
)
def test_no_registration_error_names_a_class_or_a_path(researcher_client: Client, changes) -> None:
    form: dict[str, object] = {
        "name": "uploaded",
        "dataset": "mnist",
        "architecture": "",
        "normalize": "",
    }
    form["file"] = SimpleUploadedFile("model.pt", b"not a model")
    form.update(changes())

    response = researcher_client.post("/researcher/models/register/", form)

    assert_plain_refusal(response.status_code, response.content.decode())


def assert_plain_refusal(status: int, html: str) -> None:
    page = FormPage(html)
    assert status == 400
    assert page.messages(), "a refusal with no message"
    for message in page.messages():
        assert not LEAKS.search(message), message
    assert_once_beside_fields(page, html)
