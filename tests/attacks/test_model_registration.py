"""Models registered from files: torch.export, TorchScript and safetensors + a timm (or
torchvision) architecture, through the command and the API, then attacked by the real
worker; files that need pickle, oversized files and wrong shapes are refused with a
sentence and leave nothing behind."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient
from safetensors.torch import save_file
from torch import nn

from attacks import services, tasks
from attacks.engine.model_files import (
    InputShape,
    ModelFileError,
    ModelFormat,
    detect_format,
    load_model_file,
)
from attacks.models import ClassifierModel, GenerationJob, JobStatus, Prediction
from tests.api.conftest import token_client
from tests.fixtures import PASSWORD

MNIST = InputShape(channels=1, size=28, classes=10)


def tiny_cnn(classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Flatten(),
        nn.Linear(4 * 7 * 7, classes),
    ).eval()


def write_export(path: Path, network: nn.Module | None = None, dynamic: bool = True) -> Path:
    network = network or tiny_cnn()
    batch = {0: torch.export.Dim("batch")} if dynamic else None
    program = torch.export.export(
        network, (torch.rand(2, 1, 28, 28),), dynamic_shapes=(batch,) if dynamic else None
    )
    torch.export.save(program, path)
    return path


def write_torchscript(path: Path) -> Path:
    torch.jit.save(torch.jit.trace(tiny_cnn(), torch.rand(2, 1, 28, 28)), path)
    return path


def write_timm_safetensors(path: Path) -> Path:
    torch.manual_seed(0)
    network = timm.create_model("test_efficientnet", pretrained=False, num_classes=10, in_chans=1)
    save_file(network.state_dict(), path)
    return path


def write_pickled_module(path: Path) -> Path:
    torch.save(tiny_cnn(), path)
    return path


# (file writer, file name, architecture)
FILES: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "torch.export": (write_export, "model.pt2", ""),
    "TorchScript": (write_torchscript, "model.pt", ""),
    "safetensors + timm": (write_timm_safetensors, "model.safetensors", "test_efficientnet"),
}


@pytest.fixture(autouse=True)
def small_check(settings) -> None:
    settings.ADVSTUDY_MODEL_CHECK_IMAGES = 64


def weights_files() -> set[str]:
    storage = ClassifierModel._meta.get_field("weights").storage
    return set(storage.listdir("weights")[1]) if storage.exists("weights") else set()


def attack_with_the_worker(model: ClassifierModel, name: str, maker: User) -> GenerationJob:
    setting = services.create_attack_setting(
        name=name,
        attack_name="pgd_linf",
        config={"eps": 0.3, "steps": 3},
        dataset="mnist",
        source_split="test",
        source_range=(9000, 9100),
        seed=1,
        target_model=model,
        created_by=maker,
    )
    job = services.create_generation_job(setting, 4, chunk_size=2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            break
        time.sleep(0.3)
    return job


def upload(api: APIClient, path: Path, **fields: str):
    with path.open("rb") as handle:
        return api.post("/api/v1/models/", {"file": handle, **fields}, format="multipart")


# The engine ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FILES)
def test_each_format_loads_and_answers_like_the_network_written(tmp_path, kind) -> None:
    write, file_name, architecture = FILES[kind]
    path = write(tmp_path / file_name)
    x = torch.rand(3, 1, 28, 28)

    network = load_model_file(path, detect_format(path), MNIST, architecture=architecture)

    assert network(x).shape == (3, 10)
    if kind != "safetensors + timm":
        assert torch.allclose(network(x), tiny_cnn()(x), atol=1e-5)


def test_a_pickled_file_is_refused_naming_the_formats_that_work(tmp_path) -> None:
    for path in (write_pickled_module(tmp_path / "m.pt"), tmp_path / "sd.pt"):
        if not path.exists():
            torch.save(tiny_cnn().state_dict(), path)
        with pytest.raises(ModelFileError, match=r"never loaded.*torch.export program"):
            detect_format(path)


def test_an_archive_that_inflates_far_beyond_its_size_is_refused(tmp_path) -> None:
    path = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/archive_format", "pt2")
        archive.writestr("bomb/data/weights/weight_0", b"\0" * (80 * 1024 * 1024))

    with pytest.raises(ModelFileError, match="unpacks to"):
        detect_format(path)


def _rewrite_program(source: Path, target: Path, change: Callable[[dict], None]) -> Path:
    """The archive with its program's JSON changed, as a hostile writer could."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for item in archive.infolist():
            payload = archive.read(item)
            if item.filename.endswith("models/model.json"):
                program = json.loads(payload)
                change(program)
                payload = json.dumps(program).encode()
            out.writestr(item, payload)
    return target


def test_a_program_that_calls_python_or_hides_code_in_a_shape_is_refused(tmp_path) -> None:
    source = write_export(tmp_path / "model.pt2")

    def call_os(program: dict) -> None:
        program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.serialization.os.system"

    def code_in_shape(program: dict) -> None:
        text = json.dumps(program).replace("Symbol(", "__import__('os').getcwd() or Symbol(", 1)
        program.clear()
        program.update(json.loads(text))

    for change, message in ((call_os, "not a PyTorch operator"), (code_in_shape, "refuses")):
        hostile = _rewrite_program(source, tmp_path / f"{change.__name__}.pt2", change)
        with pytest.raises(ModelFileError, match=message):
            load_model_file(hostile, ModelFormat.TORCH_EXPORT, MNIST)


# The command and the API, attacked by the worker ------------------------------------------


@pytest.mark.parametrize("kind", FILES)
def test_a_file_registered_by_the_command_and_the_api_is_attacked(
    transactional_db, celery_worker_process, tmp_path, kind
) -> None:
    write, file_name, architecture = FILES[kind]
    path = write(tmp_path / file_name)
    researcher = User.objects.create_user("registrar", password=PASSWORD, is_staff=True)
    output = io.StringIO()

    call_command(
        "register_model",
        "by-command",
        file=path,
        dataset="mnist",
        architecture=architecture,
        normalize="0.1307,0.3081",
        stdout=output,
    )
    answer = upload(
        token_client(researcher), path, name="by-api", dataset="mnist", architecture=architecture
    )

    assert answer.status_code == 201, answer.json()
    by_command = ClassifierModel.objects.get(name="by-command")
    by_api = ClassifierModel.objects.get(pk=answer.json()["id"])
    summary = output.getvalue()
    assert by_command.weights_sha256 in summary
    assert "(n, 10) logits" in summary
    assert f"clean accuracy: {by_command.clean_accuracy:.4f}" in summary
    assert by_command.created_by is None
    assert by_api.created_by == researcher
    assert by_command.normalization == {"mean": [0.1307], "std": [0.3081]}
    assert by_api.weights_sha256 == by_command.weights_sha256
    assert by_api.weights_format == detect_format(path).value
    assert answer.json()["weights_format"] == by_api.weights_format
    assert (by_api.evaluation_start, by_api.evaluation_stop) == (0, 64)
    assert by_api.clean_accuracy is not None
    assert 0 <= by_api.clean_accuracy <= 1
    for model in (by_command, by_api):
        job = attack_with_the_worker(model, f"pgd-{model.name}", researcher)
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert job.done == 4
        # Both predict on every stored example, as zoo models do: the public one, and the
        # one the setting's maker owns.
        predicted = Prediction.objects.filter(example__job=job)
        assert sorted(predicted.values_list("model_id", flat=True)) == sorted(
            [by_command.pk, by_api.pk] * 4
        )


def test_a_registered_program_is_the_reference_of_the_l0_invariance_attack(db, tmp_path) -> None:
    call_command(
        "register_model",
        "reference",
        file=write_export(tmp_path / "model.pt2"),
        dataset="mnist",
        stdout=io.StringIO(),
    )
    setting = services.create_attack_setting(
        name="l0-invariance",
        attack_name="nn_invariance_l0",
        config={
            "pool_split": "test",
            "pool_start": 0,
            "pool_stop": 2000,
            "shortlist": 2,
            "transforms": 8,
            "refined": 1,
            "local_rounds": 1,
            "local_draws": 4,
        },
        dataset="mnist",
        source_split="test",
        source_range=(9000, 9100),
        seed=1,
        target_model=ClassifierModel.objects.get(name="reference"),
    )
    job = services.create_generation_job(setting, 2, chunk_size=2)

    tasks.run_generation_job(job.pk)  # in-process: the worker runs the same functions

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.done == 2


def test_the_command_evaluates_a_registered_model_under_pgd(db, tmp_path) -> None:
    path = write_torchscript(tmp_path / "model.pt")
    output = io.StringIO()

    call_command(
        "register_model",
        "evaluated",
        file=path,
        dataset="mnist",
        evaluate_eps=0.3,
        evaluate_steps=3,
        evaluate_restarts=2,
        stdout=output,
        stderr=io.StringIO(),
    )

    model = ClassifierModel.objects.get(name="evaluated")
    assert model.robust_accuracy is not None
    assert model.clean_accuracy is not None
    assert model.robust_accuracy <= model.clean_accuracy
    assert model.evaluation_config["restarts"] == 2
    assert model.evaluation_config["step_size"] == pytest.approx(0.25)
    assert f"PGD-3 accuracy at L-inf 0.3 (2 restart(s)): {model.robust_accuracy:.4f}" in (
        output.getvalue()
    )


def test_a_torchvision_architecture_registers_on_grey_images(db, tmp_path) -> None:
    import torchvision

    network = torchvision.models.get_model("squeezenet1_1", weights=None, num_classes=10)
    save_file(network.state_dict(), tmp_path / "squeeze.safetensors")

    call_command(
        "register_model",
        "squeeze",
        file=tmp_path / "squeeze.safetensors",
        dataset="mnist",
        architecture="squeezenet1_1",
        stdout=io.StringIO(),
    )

    model = ClassifierModel.objects.get(name="squeeze")
    assert (model.architecture, model.architecture_source) == ("squeezenet1_1", "torchvision")


# Refusals -------------------------------------------------------------------------------


def test_a_pickled_module_is_refused_and_nothing_is_stored(db, researcher, tmp_path) -> None:
    path = write_pickled_module(tmp_path / "model.pt")
    files_before = weights_files()

    with pytest.raises(CommandError, match="never loaded"):
        call_command("register_model", "pickled", file=path, dataset="mnist")
    answer = upload(token_client(researcher), path, name="pickled", dataset="mnist")

    assert answer.status_code == 400
    assert "never loaded" in answer.json()["non_field_errors"][0]
    assert not ClassifierModel.objects.filter(name="pickled").exists()
    assert weights_files() == files_before


def test_an_oversized_upload_is_refused(db, researcher, tmp_path, settings) -> None:
    path = write_torchscript(tmp_path / "model.pt")
    settings.ADVSTUDY_MAX_MODEL_BYTES = 1000

    answer = upload(token_client(researcher), path, name="big", dataset="mnist")
    with pytest.raises(CommandError, match="at most 1,000 bytes"):
        call_command("register_model", "big", file=path, dataset="mnist")

    assert answer.status_code == 400
    assert "at most 1,000 bytes" in answer.json()["file"][0]
    assert not ClassifierModel.objects.filter(name="big").exists()


def test_an_upload_declared_too_large_is_refused_before_it_is_read(
    db, researcher, tmp_path, settings
) -> None:
    settings.ADVSTUDY_MAX_MODEL_BYTES = 1000
    path = tmp_path / "huge.pt2"
    path.write_bytes(b"\0" * (2 * 1024 * 1024))

    answer = upload(token_client(researcher), path, name="huge", dataset="mnist")

    assert answer.status_code == 400
    assert answer.json()["file"][0].startswith("Model files of at most 1,000 bytes")
    assert not ClassifierModel.objects.filter(name="huge").exists()


def test_the_page_refuses_an_upload_declared_too_large(db, researcher, tmp_path, settings) -> None:
    settings.ADVSTUDY_MAX_MODEL_BYTES = 1000
    path = tmp_path / "huge.pt2"
    path.write_bytes(b"\0" * (2 * 1024 * 1024))
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)

    with path.open("rb") as handle:
        answer = client.post(reverse("model-register"), {"file": handle, "name": "huge"})

    assert answer.status_code == 413
    assert "Model files of at most 1,000 bytes" in answer.content.decode()
    assert not ClassifierModel.objects.filter(name="huge").exists()


def test_the_page_still_checks_csrf(db, researcher, tmp_path) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)

    with write_torchscript(tmp_path / "model.pt").open("rb") as handle:
        answer = client.post(
            reverse("model-register"), {"file": handle, "name": "forged", "dataset": "mnist"}
        )

    assert answer.status_code == 403
    assert not ClassifierModel.objects.filter(name="forged").exists()


def test_wrong_logits_or_a_fixed_batch_are_refused_with_a_sentence(
    db, researcher, tmp_path
) -> None:
    five_classes = write_export(tmp_path / "five.pt2", tiny_cnn(classes=5))
    fixed_batch = write_export(tmp_path / "fixed.pt2", dynamic=False)
    api = token_client(researcher)

    wrong = upload(api, five_classes, name="five", dataset="mnist")
    fixed = upload(api, fixed_batch, name="fixed", dataset="mnist")

    assert wrong.status_code == 400
    assert wrong.json()["non_field_errors"] == [
        "The model returns logits of shape (2, 5) for 2 images; the dataset needs (2, 10)."
    ]
    assert fixed.status_code == 400
    assert "dynamic batch dimension" in fixed.json()["non_field_errors"][0]
    assert not ClassifierModel.objects.filter(name__in=["five", "fixed"]).exists()


class NaNLogits(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * float("nan")


def test_non_finite_logits_are_refused(db, researcher, tmp_path) -> None:
    path = write_export(tmp_path / "nan.pt2", NaNLogits())

    answer = upload(token_client(researcher), path, name="nan", dataset="mnist")

    assert answer.status_code == 400
    assert answer.json()["non_field_errors"] == [
        "The model returns non-finite logits (NaN or infinity)."
    ]


def test_the_page_registers_a_model_for_the_researcher(db, researcher, tmp_path) -> None:
    client = Client()
    client.force_login(researcher)
    path = write_torchscript(tmp_path / "model.pt")

    with path.open("rb") as handle:
        answer = client.post(
            reverse("model-register"), {"file": handle, "name": "paged", "dataset": "mnist"}
        )

    model = ClassifierModel.objects.get(name="paged")
    assert answer.status_code == 302
    assert answer["Location"].endswith(f"/models/{model.pk}/")
    assert model.created_by == researcher
    page = client.get(answer["Location"]).content.decode()
    assert "TorchScript" in page
    assert "model.pt" in page
