"""The whole attack registry on a tiny model, closed-form optima, projections, quantisation."""

import numpy as np
import pytest
import torch
from torch import nn

from attacks.engine.architectures import build_architecture
from attacks.engine.attacks import AttackConfigError, AttackContext, attack_names, build_attack
from attacks.engine.attacks.base import Attack, register_attack
from attacks.engine.attacks.invariance import TRAMER_TARGETS, ink_removed, project_towards
from attacks.engine.datasets import load_dataset
from attacks.engine.images import decode_png, distances, encode_png, quantize_toward
from attacks.engine.threats import project_l0, project_l2
from tests.offline_data import TRAMER

# Every registered attack, a small config for it, and the budget its output must respect.
REGISTRY_CASES: dict[str, tuple[dict, str, float]] = {
    "clean": ({}, "l0", 0),
    "fgsm": ({"eps": 0.3}, "linf", 0.3),
    "pgd_linf": ({"eps": 0.3, "steps": 5, "restarts": 2}, "linf", 0.3),
    "pgd_l2": ({"eps": 2.0, "step_size": 0.5, "steps": 5}, "l2", 2.0),
    "pgd_l2_large_targeted": ({"eps": 5.0, "step_size": 1.0, "steps": 5}, "l2", 5.0),
    "pgd_l0": ({"pixels": 12, "steps": 5}, "l0", 12),
    "nn_invariance_linf": ({"eps": 0.3}, "linf", 0.3),
    "nn_invariance_l2": ({"eps": 2.0}, "l2", 2.0),
    # Its ball is around the binarised source: binarising alone changes every grey
    # pixel of the clean image (60 to 230 of them here). Measured here: at most 27.
    "nn_invariance_l0": (
        {"shortlist": 4, "transforms": 16, "refined": 1, "local_rounds": 2, "local_draws": 8},
        "l0_binarised",
        60,
    ),
}


def tiny_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, AttackContext]:
    data = load_dataset("mnist", "test")
    x = data.as_float(slice(9000, 9012))
    pool = AttackContext(data.images[:1000], data.labels[:1000])
    return x, data.labels[9000:9012], pool


def test_every_registered_attack_has_a_registry_case() -> None:
    assert sorted(REGISTRY_CASES) == attack_names()


@pytest.mark.parametrize("name", sorted(REGISTRY_CASES))
def test_every_attack_declares_the_budget_its_output_keeps(name: str) -> None:
    config, norm, radius = REGISTRY_CASES[name]

    attack = build_attack(name, config)

    # Clean images and the L0 invariance search (a ball around the binarised source,
    # no size set in advance) have no budget to declare.
    expected = (None, None) if name in ("clean", "nn_invariance_l0") else (norm, radius)
    assert (attack.norm, attack.eps) == expected


def budget_used(norm: str, clean: torch.Tensor, changed: torch.Tensor) -> float:
    measured = distances((clean * 255).round().to(torch.uint8), changed)
    return max(getattr(d, norm) for d in measured)


def ball_centre(norm: str, x: torch.Tensor) -> tuple[str, torch.Tensor]:
    """The norm and the centre of an attack's ball: ``x``, or ``x`` binarised at 0.5."""
    if norm.endswith("_binarised"):
        return norm.removesuffix("_binarised"), (x > 0.5).to(x.dtype)
    return norm, x


@pytest.mark.parametrize("name", sorted(REGISTRY_CASES))
def test_every_attack_stays_in_its_ball_and_box_after_quantisation(name: str, batch) -> None:
    x, y, context = batch
    config, norm, radius = REGISTRY_CASES[name]
    attack = build_attack(name, config)

    output = attack(tiny_model(), x, y, generator=torch.Generator().manual_seed(0), context=context)
    stored = quantize_toward((x * 255).round().to(torch.uint8), output.x_adv)
    norm, centre = ball_centre(norm, x)

    assert output.x_adv.min() >= 0
    assert output.x_adv.max() <= 1
    float_delta = (output.x_adv - centre).flatten(1)
    float_used = {
        "linf": float_delta.abs().max(),
        "l2": float_delta.norm(dim=1).max(),
        "l0": (float_delta != 0).sum(dim=1).max(),
    }[norm]
    assert float_used <= radius + 1e-5
    assert budget_used(norm, centre, stored) <= radius + 1e-9
    assert output.target.shape == y.shape


@pytest.mark.parametrize("name", sorted(REGISTRY_CASES))
def test_attacks_leave_model_state_gradients_and_global_rng_alone(name: str, batch) -> None:
    x, y, context = batch
    model = tiny_model().train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    rng_before = torch.get_rng_state()

    attack = build_attack(name, REGISTRY_CASES[name][0])
    attack(model, x, y, generator=torch.Generator().manual_seed(0), context=context)

    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert torch.equal(rng_before, torch.get_rng_state())


@pytest.mark.parametrize("name", sorted(REGISTRY_CASES))
def test_an_example_attacked_alone_equals_it_attacked_in_a_batch(name: str, batch) -> None:
    x, y, context = batch
    keys = torch.arange(100, 112)
    attack = build_attack(name, REGISTRY_CASES[name][0])

    together = attack(
        tiny_model(), x, y, generator=torch.Generator().manual_seed(5), context=context, keys=keys
    )
    for i in (0, 5, 11):
        alone = attack(
            tiny_model(),
            x[i : i + 1],
            y[i : i + 1],
            context=context,
            generator=torch.Generator().manual_seed(5),
            keys=keys[i : i + 1],
        )
        torch.testing.assert_close(alone.x_adv[0], together.x_adv[i], atol=1e-6, rtol=0)
        assert int(alone.target[0]) == int(together.target[i])


def linear_two_class(direction: torch.Tensor) -> nn.Module:
    """logit_1 - logit_0 = <direction, x>: the loss of class 0 rises along ``direction``."""
    linear = nn.Linear(direction.numel(), 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.stack([-direction.flatten(), direction.flatten()]) / 2)
    return nn.Sequential(nn.Flatten(), linear)


def test_linf_attacks_find_the_closed_form_optimum_of_a_linear_model() -> None:
    """For a linear model the worst L-inf perturbation is eps * sign(w), whatever the loss."""
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 1, 8, 8, generator=generator)
    x, y = torch.full((1, 1, 8, 8), 0.5), torch.tensor([0])
    optimum = x + 0.1 * direction.sign()

    for name, config in (
        ("fgsm", {"eps": 0.1}),
        ("pgd_linf", {"eps": 0.1, "step_size": 0.03, "steps": 10}),
    ):
        x_adv = build_attack(name, config)(
            linear_two_class(direction), x, y, generator=generator
        ).x_adv
        torch.testing.assert_close(x_adv, optimum, atol=1e-6, rtol=0)


def test_l2_pgd_finds_the_closed_form_optimum_of_a_linear_model() -> None:
    """The worst L2 perturbation is eps * w / ||w||."""
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 1, 8, 8, generator=generator)
    x, y = torch.full((1, 1, 8, 8), 0.5), torch.tensor([0])
    optimum = x + 0.4 * direction / direction.norm()

    from_clean = build_attack(
        "pgd_l2", {"eps": 0.4, "step_size": 0.1, "steps": 20, "random_start": False}
    )
    # From a random start the part off the optimal direction shrinks by about
    # eps / (eps + step) per step: 80 steps leave it below 1e-7.
    from_random = build_attack("pgd_l2", {"eps": 0.4, "step_size": 0.1, "steps": 80})

    for attack in (from_clean, from_random):
        x_adv = attack(linear_two_class(direction), x, y, generator=generator).x_adv
        torch.testing.assert_close(x_adv, optimum, atol=1e-5, rtol=0)


def test_l2_projection_is_the_nearest_feasible_point() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 6, 6, generator=generator)
    y = x + 3 * torch.randn(x.shape, generator=generator)  # far outside, box binding

    projected = project_l2(x, y, 1.0)

    assert ((projected - x).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all()
    assert projected.min() >= 0
    assert projected.max() <= 1
    # No feasible point is nearer: sample many and compare.
    samples = project_l2(
        x.repeat(200, 1, 1, 1), torch.rand(3200, 1, 6, 6, generator=generator), 1.0
    )
    sample_distance = (samples - y.repeat(200, 1, 1, 1)).flatten(1).norm(dim=1).view(200, 16)
    projected_distance = (projected - y).flatten(1).norm(dim=1)
    assert (projected_distance <= sample_distance.min(dim=0).values + 1e-5).all()


def test_l0_projection_keeps_exactly_the_k_most_valuable_in_box_changes() -> None:
    x = torch.tensor([[[[0.0, 0.5, 1.0, 0.2]]]])
    wanted = torch.tensor([[[[0.9, 0.4, 0.0, 0.25]]]])  # changes: +0.9, -0.1, -1.0, +0.05

    projected = project_l0(x, wanted, 2)

    torch.testing.assert_close(projected, torch.tensor([[[[0.9, 0.5, 0.0, 0.2]]]]))
    # A change that leaves the box is worth only its in-box part.
    outside = project_l0(x, torch.tensor([[[[-0.8, 0.5, 1.6, 0.9]]]]), 1)
    torch.testing.assert_close(outside, torch.tensor([[[[0.0, 0.5, 1.0, 0.9]]]]))


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
    attack = build_attack("pgd_linf", {"eps": 0.3, "steps": 20, "step_size": 0.03})

    x_adv = attack(model, x, y, generator=torch.Generator().manual_seed(0)).x_adv

    assert (model(x).argmax(1) == y).float().mean() >= 0.8
    assert (model(x_adv).argmax(1) == y).float().mean() <= 0.05


def test_same_generator_seed_gives_the_same_examples(batch) -> None:
    x, y, _ = batch
    attack = build_attack("pgd_linf", {"eps": 0.3, "steps": 5})
    first = attack(tiny_model(), x, y, generator=torch.Generator().manual_seed(7)).x_adv
    second = attack(tiny_model(), x, y, generator=torch.Generator().manual_seed(7)).x_adv
    other = attack(tiny_model(), x, y, generator=torch.Generator().manual_seed(8)).x_adv
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_registry_refuses_a_second_attack_with_a_taken_name() -> None:
    class Duplicate(Attack[object]):
        name = "pgd_linf"

    with pytest.raises(ValueError, match="already registered"):
        register_attack(Duplicate)


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("pgd_linf", {"epsilon": 0.3}, 'has no option "epsilon"'),
        ("pgd_linf", {"eps": -1}, "eps must be positive"),
        ("pgd_linf", {"steps": 0}, "at least 1"),
        ("pgd_l0", {"pixels": 0}, "at least 1"),
        ("pgd_l2_large_targeted", {"targeted": False}, "targeted"),
        ("nn_invariance_linf", {"targets": {"3": [3]}}, "own target"),
        ("nn_invariance_l0", {"targets": {"3": [3]}}, "own target"),
        ("nn_invariance_l0", {"transforms": 0}, "at least 1"),
        ("nn_invariance_l0", {"scale_range": (1.2, 0.8)}, "scale_range"),
        ("nn_invariance_l0", {"max_ink_lost": 1.0}, "max_ink_lost"),
        ("no_such_attack", {}, "There is no attack"),
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
    attack = build_attack("nn_invariance_linf", {"eps": 0.3})

    output = attack(None, x, y, generator=torch.Generator(), context=context)

    for source, target in zip(y.tolist(), output.target.tolist(), strict=True):
        assert target in TRAMER_TARGETS[source]
    assert (output.x_adv - x).abs().amax(dim=(1, 2, 3)).min() > 0.1


def test_nearest_neighbour_attack_needs_a_pool(batch) -> None:
    x, y, _ = batch
    with pytest.raises(AttackConfigError, match="pool"):
        build_attack("nn_invariance_linf")(None, x, y, generator=torch.Generator())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_a_conv_models_memory_layout_and_values_are_restored(layout, batch) -> None:
    x, y, _ = batch
    torch.manual_seed(0)
    model = build_architecture("small_cnn").to(memory_format=layout)
    before = {key: value.clone() for key, value in model.state_dict().items()}

    build_attack("pgd_linf", {"steps": 3})(model, x, y, generator=torch.Generator())

    weight = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).weight
    assert weight.is_contiguous(memory_format=layout)
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_a_number_too_large_for_a_float_is_a_sentence() -> None:
    with pytest.raises(AttackConfigError, match="a number is too large to use"):
        build_attack("pgd_linf", {"steps": 10**400})
