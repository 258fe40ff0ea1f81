"""Our attacks against torchattacks (an independent implementation) on shipped models."""

import pytest
import torch
import torchattacks

from attacks.engine.attacks import build_attack
from attacks.engine.datasets import load_dataset
from attacks.engine.zoo import load_zoo_model

EXAMPLES = 500


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("mnist", "test")
    # Images the shipped models were not evaluated on: [5000, 5500).
    return data.as_float(slice(5000, 5000 + EXAMPLES)), data.labels[5000 : 5000 + EXAMPLES]


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize(
    ("model_name", "eps"),
    [("mnist-small-cnn-standard", 0.1), ("mnist-small-cnn-fgsm-rs-0.3", 0.3)],
)
def test_pgd_robust_accuracy_is_within_one_point_of_torchattacks(model_name, eps, inputs) -> None:
    model = load_zoo_model(model_name)
    x, y = inputs
    ours = build_attack("pgd_linf", {"eps": eps, "step_size": 0.01, "steps": 40})
    theirs = torchattacks.PGD(model, eps=eps, alpha=0.01, steps=40, random_start=True)

    ours_accuracy = accuracy(
        model, ours(model, x, y, generator=torch.Generator().manual_seed(0)).x_adv, y
    )
    with torch.random.fork_rng(devices=[]):  # torchattacks draws from the global RNG
        torch.manual_seed(0)
        theirs_accuracy = accuracy(model, theirs(x, y), y)

    assert 0.02 < theirs_accuracy < accuracy(model, x, y)  # a setting where the attack matters
    assert abs(ours_accuracy - theirs_accuracy) <= 0.01


def test_fgsm_matches_torchattacks(inputs) -> None:
    model = load_zoo_model("mnist-small-cnn-standard")
    x, y = inputs
    ours = build_attack("fgsm", {"eps": 0.1})(model, x, y, generator=torch.Generator()).x_adv
    theirs = torchattacks.FGSM(model, eps=0.1)(x, y)

    # Ours keeps the better of the clean image and the step; where the step wins, they agree.
    stepped = (ours != x).flatten(1).any(dim=1)
    assert stepped.float().mean() > 0.9
    torch.testing.assert_close(ours[stepped], theirs[stepped], atol=1e-6, rtol=0)
    assert accuracy(model, ours, y) <= accuracy(model, theirs, y)
