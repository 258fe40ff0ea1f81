"""The whole attack registry on a tiny model, quantisation, and Tramèr et al.'s released set."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attacks.engine.attacks import AttackConfigError, AttackContext, attack_names, build_attack
from attacks.engine.attacks.base import Attack, register_attack
from attacks.engine.attacks.invariance import TRAMER_TARGETS, ink_removed, project_towards
from attacks.engine.datasets import load_dataset
from attacks.engine.images import decode_png, distances, encode_png, quantize_toward

TRAMER = Path(__file__).resolve().parent.parent / "data" / "tramer2020"
EPS = 0.3


def tiny_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, AttackContext]:
    data = load_dataset("mnist", "test")
    x = data.as_float(slice(9000, 9012))
    pool = AttackContext(data.images[:1000], data.labels[:1000])
    return x, data.labels[9000:9012], pool


@pytest.mark.parametrize("name", attack_names())
def test_every_attack_stays_in_its_ball_and_box_after_quantisation(name: str, batch) -> None:
    x, y, context = batch
    attack = build_attack(name, {"eps": EPS} if name != "clean" else {})
    generator = torch.Generator().manual_seed(0)

    output = attack(tiny_model(), x, y, generator=generator, context=context)
    stored = quantize_toward((x * 255).round().to(torch.uint8), output.x_adv)

    assert output.x_adv.min() >= 0
    assert output.x_adv.max() <= 1
    assert (output.x_adv - x).abs().max() <= EPS + 1e-6
    assert max(d.linf for d in distances((x * 255).round().to(torch.uint8), stored)) <= EPS
    assert output.target.shape == y.shape


@pytest.mark.parametrize("name", attack_names())
def test_attacks_leave_model_state_gradients_and_global_rng_alone(name: str, batch) -> None:
    x, y, context = batch
    model = tiny_model().train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    rng_before = torch.get_rng_state()

    build_attack(name)(model, x, y, generator=torch.Generator().manual_seed(0), context=context)

    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert torch.equal(rng_before, torch.get_rng_state())


def test_pgd_drives_a_trained_models_accuracy_near_zero() -> None:
    data = load_dataset("mnist", "test")
    model = tiny_model()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.cross_entropy(model(data.as_float(slice(0, 2000))), data.labels[:2000])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    x, y = data.as_float(slice(9000, 9200)), data.labels[9000:9200]
    attack = build_attack("pgd_linf", {"eps": EPS, "steps": 20, "step_size": 0.03})

    x_adv = attack(model, x, y, generator=torch.Generator().manual_seed(0)).x_adv

    clean_accuracy = (model(x).argmax(1) == y).float().mean()
    robust_accuracy = (model(x_adv).argmax(1) == y).float().mean()
    assert clean_accuracy >= 0.8
    assert robust_accuracy <= 0.05


def test_same_generator_seed_gives_the_same_examples(batch) -> None:
    x, y, _ = batch
    attack = build_attack("pgd_linf", {"eps": EPS, "steps": 5})
    first = attack(tiny_model(), x, y, generator=torch.Generator().manual_seed(7)).x_adv
    second = attack(tiny_model(), x, y, generator=torch.Generator().manual_seed(7)).x_adv
    assert torch.equal(first, second)


def test_registry_refuses_a_second_attack_with_a_taken_name() -> None:
    class Duplicate(Attack[object]):
        name = "pgd_linf"

    with pytest.raises(ValueError, match="already registered"):
        register_attack(Duplicate)


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("pgd_linf", {"epsilon": 0.3}, "unknown option"),
        ("pgd_linf", {"eps": -1}, "eps must be positive"),
        ("pgd_linf", {"steps": 0}, "at least 1"),
        ("nn_invariance_linf", {"targets": {"3": [3]}}, "own target"),
        ("no_such_attack", {}, "unknown attack"),
    ],
)
def test_bad_configs_are_refused_with_a_clear_error(name: str, config: dict, message: str) -> None:
    with pytest.raises(AttackConfigError, match=message):
        build_attack(name, config)


def test_quantisation_toward_the_clean_image_never_leaves_the_ball() -> None:
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 256, (64, 1, 28, 28), generator=generator, dtype=torch.uint8)
    eps = 0.3
    noise = (torch.rand(clean.shape, generator=generator) * 2 - 1) * eps
    adversarial = (clean.float() / 255 + noise).clamp(0, 1)

    stored = quantize_toward(clean, adversarial)

    delta = stored.float() - clean.float()
    assert delta.abs().max() <= 255 * eps
    # Toward the clean image: never a larger change than the float one, never the other way.
    float_delta = adversarial * 255 - clean.float()
    assert (delta.abs() <= float_delta.abs() + 1e-3).all()
    assert (delta * float_delta >= 0).all()


def test_png_round_trip_is_exact_and_carries_no_metadata() -> None:
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    payload = encode_png(image)
    assert torch.equal(decode_png(payload), image)
    for chunk in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"tIME"):
        assert chunk not in payload


def test_projection_and_target_rule_reproduce_the_released_eps_03_set_exactly() -> None:
    """Tramèr et al.'s aligned neighbours in, their automated eps=0.3 images out, bit for bit."""
    sources = np.load(TRAMER / "linf_X_test_100.npy").astype(np.float32)
    neighbours = np.load(TRAMER / "linf_all_nns.npy").astype(np.float32)
    neighbour_classes = np.load(TRAMER / "linf_all_y_nns.npy")
    released = np.load(TRAMER / "linf_automated_eps03.npy")
    labels = load_dataset("mnist", "test").labels[np.load(TRAMER / "indexs.npy")]

    for i in range(100):
        x = torch.from_numpy(sources[i]).reshape(1, 28, 28)
        candidates = [
            project_towards(x, torch.from_numpy(neighbours[i, j]).reshape(1, 28, 28), 255 * 0.3)
            for j in range(9)
            if int(neighbour_classes[i, j]) in TRAMER_TARGETS[int(labels[i])]
        ]
        removed = [float(ink_removed(x[None], candidate[None])[0]) for candidate in candidates]
        chosen = candidates[int(np.argmin(removed))]
        assert np.array_equal(chosen.numpy().reshape(28, 28), released[i].reshape(28, 28)), i


def test_nearest_neighbour_attack_changes_the_image_toward_another_class(batch) -> None:
    x, y, context = batch
    attack = build_attack("nn_invariance_linf", {"eps": EPS})

    output = attack(None, x, y, generator=torch.Generator(), context=context)

    for source, target in zip(y.tolist(), output.target.tolist(), strict=True):
        assert target in TRAMER_TARGETS[source]
    assert (output.x_adv - x).abs().amax(dim=(1, 2, 3)).min() > 0.1


def test_nearest_neighbour_attack_needs_a_pool(batch) -> None:
    x, y, _ = batch
    with pytest.raises(AttackConfigError, match="pool"):
        build_attack("nn_invariance_linf")(None, x, y, generator=torch.Generator())
