"""The shipped zoo: weights match their checksums, import registers them once."""

import hashlib

from django.core.management import call_command

from attacks.engine.zoo import ZOO_DIR, load_zoo_model, zoo_entries
from attacks.management.commands.train_model import model_card
from attacks.models import ClassifierModel, JobStatus


def test_the_zoo_ships_standard_and_adversarially_trained_mnist_models() -> None:
    recipes = {entry["training"]["config"]["recipe"] for entry in zoo_entries()}
    assert {"standard", "fgsm_rs", "ibp"} <= recipes
    for entry in zoo_entries():
        payload = (ZOO_DIR / entry["weights"]).read_bytes()
        assert hashlib.sha256(payload).hexdigest() == entry["weights_sha256"]
        assert entry["training"]["split"] == "train"
        assert load_zoo_model(entry["name"]).training is False


def test_import_registers_every_shipped_model_once(db) -> None:
    call_command("import_zoo")
    call_command("import_zoo")

    models = ClassifierModel.objects.all()
    assert models.count() == len(zoo_entries())
    for model in models:
        entry = next(e for e in zoo_entries() if e["name"] == model.name)
        assert model.status == JobStatus.SUCCEEDED
        assert model.weights_sha256 == entry["weights_sha256"]
        assert model.robust_accuracy == entry["robust_accuracy"]
        with model.weights.open("rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == model.weights_sha256


def test_the_model_card_is_the_one_written_from_the_manifest() -> None:
    assert (ZOO_DIR / "MODEL_CARD.md").read_text() == model_card(zoo_entries())
