"""The training task: reproducible weights, recorded evaluation, live progress on its row."""

import torch

from attacks import services, tasks
from attacks.models import ClassifierModel, JobStatus


def request(name: str, recipe: str = "standard") -> ClassifierModel:
    return services.request_training(
        name=name,
        architecture="small_cnn",
        dataset="mnist",
        training_split="test",
        training_range=(0, 1000),
        evaluation_split="test",
        evaluation_range=(9000, 9200),
        config={"recipe": recipe, "epochs": 1, "eps": 0.1},
        evaluation={"eps": 0.1, "steps": 5},
    )


def test_same_config_trains_the_same_weights_and_records_its_evaluation(db) -> None:
    rng = torch.get_rng_state()
    first, second = request("first"), request("second")

    tasks.train_model(first.pk)
    tasks.train_model(second.pk)

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == JobStatus.SUCCEEDED
    assert first.weights_sha256 == second.weights_sha256
    assert first.progress == 1.0
    assert first.evaluation_config["steps"] == 5
    assert first.robust_accuracy is not None
    assert first.clean_accuracy is not None
    assert 0 <= first.robust_accuracy <= first.clean_accuracy <= 1
    assert first.certified_accuracy is not None
    assert torch.equal(rng, torch.get_rng_state())


def test_a_finished_training_is_not_run_again(db) -> None:
    model = request("once", recipe="ibp")
    tasks.train_model(model.pk)
    model.refresh_from_db()
    finished_at = model.finished_at

    tasks.train_model(model.pk)  # a redelivered message

    model.refresh_from_db()
    assert model.finished_at == finished_at
