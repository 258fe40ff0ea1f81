"""Training recipes, interval bounds, and evaluation."""

import pytest
import torch
from torch import nn

from attacks.engine.architectures import build_architecture
from attacks.engine.attacks import build_attack
from attacks.engine.certify import UnsupportedLayer, certified, margin_lower_bounds
from attacks.engine.datasets import load_dataset
from attacks.engine.training import (
    RECIPES,
    EvaluationConfig,
    TrainingConfig,
    cyclic_rate,
    evaluate,
    serialize_weights,
    train,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    mnist = load_dataset("mnist", "test")
    return mnist.as_float(slice(0, 3000)), mnist.labels[:3000]


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_trains_and_leaves_the_global_rng_alone(recipe: str, data) -> None:
    images, labels = data
    torch.manual_seed(0)
    model = build_architecture("small_cnn")
    before, _ = serialize_weights(model)
    rng = torch.get_rng_state()

    config = TrainingConfig(recipe=recipe, epochs=1, batch_size=64, pgd_steps=3, eps=0.3)
    train(model, images[:256], labels[:256], config, device=CPU)

    assert serialize_weights(model)[0] != before
    assert not model.training
    assert torch.equal(rng, torch.get_rng_state())


def test_same_seed_trains_the_same_weights(data) -> None:
    images, labels = data
    digests = []
    for _ in range(2):
        torch.manual_seed(3)
        model = build_architecture("small_cnn")
        train(
            model,
            images[:256],
            labels[:256],
            TrainingConfig(recipe="fgsm_rs", epochs=1),
            device=CPU,
        )
        digests.append(serialize_weights(model)[1])
    assert digests[0] == digests[1]


def random_points_in_ball(x: torch.Tensor, eps: float, count: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    noise = (torch.rand((count, *x.shape[1:]), generator=generator) * 2 - 1) * eps
    return (x + noise).clamp(0, 1)


def test_interval_bounds_hold_for_points_inside_the_ball(data) -> None:
    images, labels = data
    torch.manual_seed(0)
    model = build_architecture("small_cnn").eval()
    x, y = images[:4], labels[:4]

    bounds = margin_lower_bounds(model, x, y, 0.05)

    for i in range(4):
        logits = model(random_points_in_ball(x[i : i + 1], 0.05, 200))
        margins = logits[:, y[i]].unsqueeze(1) - logits
        assert (margins >= bounds[i] - 1e-4).all()
    # Also at the worst points PGD finds.
    pgd = build_attack("pgd_linf", {"eps": 0.05, "steps": 20, "step_size": 0.01})
    logits = model(pgd(model, x, y, generator=torch.Generator().manual_seed(0)).x_adv)
    margins = logits.gather(1, y.unsqueeze(1)) - logits
    assert (margins >= bounds - 1e-4).all()


@pytest.fixture(scope="module")
def trained_at_eps_01(data) -> dict[str, nn.Module]:
    """A standard and an IBP small CNN, trained briefly on 2,500 images at eps 0.1."""
    images, labels = data
    models = {}
    for recipe in ("standard", "ibp"):
        torch.manual_seed(0)
        model = build_architecture("small_cnn")
        config = TrainingConfig(recipe=recipe, epochs=3, batch_size=64, eps=0.1)
        models[recipe] = train(model, images[:2500], labels[:2500], config, device=CPU)
    return models


def test_ibp_training_certifies_what_standard_training_cannot(data, trained_at_eps_01) -> None:
    images, labels = data
    config = EvaluationConfig(eps=0.1, steps=20, step_size=0.01)
    ibp = evaluate(trained_at_eps_01["ibp"], images[2500:], labels[2500:], config)
    standard = evaluate(trained_at_eps_01["standard"], images[2500:], labels[2500:], config)

    assert ibp.certified_accuracy is not None
    assert standard.certified_accuracy is not None
    assert ibp.certified_accuracy >= 0.2
    assert standard.certified_accuracy <= 0.05
    # Sound: nothing certified can be broken, so certified <= robust <= clean.
    assert ibp.certified_accuracy <= ibp.robust_accuracy <= ibp.clean_accuracy


def test_certified_examples_resist_pgd(data, trained_at_eps_01) -> None:
    images, labels = data
    model = trained_at_eps_01["ibp"]
    x, y = images[2500:2800], labels[2500:2800]
    proven = certified(model, x, y, 0.1)
    pgd = build_attack("pgd_linf", {"eps": 0.1, "steps": 40, "step_size": 0.01, "restarts": 2})
    x_adv = pgd(model, x[proven], y[proven], generator=torch.Generator().manual_seed(1)).x_adv

    assert proven.sum() >= 20
    assert (model(x_adv).argmax(1) == y[proven]).all()


def test_certification_refuses_layers_it_cannot_bound() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Tanh(), nn.Linear(10, 10))
    with pytest.raises(UnsupportedLayer, match="Tanh"):
        margin_lower_bounds(model, torch.rand(1, 1, 28, 28), torch.tensor([0]), 0.1)


def test_evaluation_reports_no_certified_accuracy_for_a_resnet() -> None:
    model = build_architecture("resnet18_cifar", 3, 10, 32).eval()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    result = evaluate(model, x, y, EvaluationConfig(eps=8 / 255, steps=2, step_size=2 / 255))
    assert result.certified_accuracy is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"recipe": "magic"}, "unknown recipe"),
        ({"eps": 2.0}, "eps must be in"),
        ({"lr_schedule": "warm"}, "unknown lr_schedule"),
        ({"pgd_norm": "l1"}, "unknown pgd_norm"),
    ],
)
def test_bad_training_configs_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**changes)


def test_thecyclic_rate_rises_to_its_peak_at_two_fifths_then_falls_to_zero() -> None:
    rates = [cyclic_rate(0.005, step, 100) for step in range(1, 101)]
    assert rates[39] == pytest.approx(0.005)  # step 40 of 100
    assert rates[:40] == sorted(rates[:40])
    assert rates[39:] == sorted(rates[39:], reverse=True)
    assert rates[-1] == 0.0


def test_l2_adversarial_training_takes_an_l2_budget_above_one(data) -> None:
    images, labels = data
    torch.manual_seed(0)
    model = build_architecture("wong2020_cnn")
    config = TrainingConfig(
        recipe="pgd_at",
        pgd_norm="l2",
        eps=2.0,
        pgd_steps=2,
        pgd_step_size=1.0,
        epochs=1,
        batch_size=64,
        lr_schedule="cyclic",
    )
    before, _ = serialize_weights(model)
    train(model, images[:128], labels[:128], config, device=CPU)
    assert serialize_weights(model)[0] != before


def test_an_l2_evaluation_attacks_in_l2_and_certifies_nothing(data) -> None:
    images, labels = data
    torch.manual_seed(0)
    model = build_architecture("wong2020_cnn").eval()
    l2 = EvaluationConfig(eps=2.0, steps=5, step_size=0.5, norm="l2")

    result = evaluate(model, images[:64], labels[:64], l2)

    assert result.certified_accuracy is None
    assert result.robust_accuracy <= result.clean_accuracy
    with pytest.raises(ValueError, match="unknown norm"):
        EvaluationConfig(norm="l1")
