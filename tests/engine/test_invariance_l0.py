"""The automatic L0 invariance attack, piece by piece, then whole on Tramèr et al.'s sources."""

import time

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from attacks.engine.attacks import AttackConfigError, AttackContext, build_attack
from attacks.engine.attacks.invariance import TRAMER_TARGETS
from attacks.engine.attacks.invariance_l0 import (
    L0InvarianceConfig,
    affine_maps,
    best_match,
    choose_subset,
    flip_clusters,
    warp,
)
from attacks.engine.binary_images import binarise, label_clusters
from attacks.engine.datasets import load_dataset
from attacks.engine.zoo import load_zoo_model
from tests.offline_data import mnist_pool, record_figures, tramer_sources

EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def test_clusters_join_diagonal_neighbours_and_are_numbered_in_raster_order() -> None:
    mask = torch.tensor(
        [
            [0, 0, 0, 0, 1, 1],
            [1, 0, 0, 0, 0, 1],
            [0, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 1, 0],
            [1, 0, 0, 0, 1, 0],
        ],
        dtype=torch.bool,
    )

    labels = label_clusters(mask[None])[0]

    expected = torch.tensor(
        [
            [0, 0, 0, 0, 1, 1],
            [2, 0, 0, 0, 0, 1],
            [0, 2, 0, 0, 0, 0],
            [0, 0, 2, 0, 3, 0],
            [4, 0, 0, 0, 3, 0],
        ]
    )
    assert torch.equal(labels, expected)


def test_clusters_equal_scipy_labels_with_eight_connectivity() -> None:
    generator = torch.Generator().manual_seed(0)
    densities = torch.rand(40, 1, 1, generator=generator) * 0.6
    masks = torch.rand(40, 28, 28, generator=generator) < densities

    labels = label_clusters(masks)

    for mask, ours in zip(masks.numpy(), labels.numpy(), strict=True):
        theirs, _ = scipy.ndimage.label(mask, structure=EIGHT_CONNECTED)
        assert np.array_equal(ours, theirs)


def test_clusters_of_an_empty_mask_are_none() -> None:
    assert not label_clusters(torch.zeros(2, 5, 5, dtype=torch.bool)).any()


@pytest.mark.parametrize("test_index", [0, 3, 18])
def test_search_finds_a_planted_transformed_copy_of_the_source(test_index: int) -> None:
    """A rotated, scaled, sheared and shifted copy hidden among 200 digits is found and undone."""
    data = load_dataset("mnist", "test")
    source = binarise(data.as_float(slice(test_index, test_index + 1)))[0]
    moved = torch.tensor([[10.0, 1.1, 0.95, 0.05, -0.05, 1.5, -1.0]])
    planted = warp(source[None], affine_maps(moved, 28))[0]
    others = data.images[100:300] > 127
    images = torch.cat([others, planted[None]]).float()

    index, match = best_match(
        source, images, torch.Generator().manual_seed(0), L0InvarianceConfig()
    )

    assert index == len(images) - 1
    # Two bilinear resamplings lose a few edge pixels: measured 4, 2 and 8 of 71 to 137.
    assert int(match.differing[0]) <= 10
    assert int(match.differing[0]) == int((match.images[0] != source.bool()).sum())


def test_choose_subset_takes_the_fewest_pixels_within_the_relative_tolerance() -> None:
    subsets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    sizes = torch.tensor([3.0, 10.0, 1.0])

    confident = torch.tensor([0.20, 0.96, 0.99, 0.97])
    assert choose_subset(subsets, confident, sizes, 0.05) == 1  # 10 pixels at 0.96 >= 0.9405
    # Where the best probability is small, a subset the model does not see as the target
    # at all (the 3-pixel one at 0.001) is no near-tie: the tolerance is relative.
    unsure = torch.tensor([0.001, 0.040, 0.042, 0.041])
    assert choose_subset(subsets, unsure, sizes, 0.05) == 1
    assert choose_subset(subsets, unsure, sizes, 0.0) == 2


def tiny_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


@pytest.mark.parametrize("model_name", ["tiny", "mnist-small-cnn-standard"])
def test_flips_are_whole_clusters_of_the_differences_from_the_candidate(model_name: str) -> None:
    data = load_dataset("mnist", "test")
    model = tiny_model() if model_name == "tiny" else load_zoo_model(model_name)
    sources = binarise(data.as_float(slice(0, 20)))
    candidates = binarise(data.as_float(slice(20, 40)))

    for source, candidate in zip(sources, candidates, strict=True):
        x_adv = flip_clusters(model, source, candidate, 3, L0InvarianceConfig())

        flipped = (x_adv != source)[0]
        differing = (source != candidate)[0]
        assert flipped.any()
        assert not (flipped & ~differing).any()
        assert torch.equal(x_adv[0][flipped], candidate[0][flipped])
        clusters = label_clusters(differing[None])[0]
        for number in clusters[flipped].unique().tolist():
            assert flipped[clusters == number].all()


def test_the_attack_needs_a_pool_and_a_model() -> None:
    x, y = torch.zeros(1, 1, 28, 28), torch.tensor([3])
    with pytest.raises(AttackConfigError, match="pool"):
        build_attack("nn_invariance_l0")(tiny_model(), x, y, generator=torch.Generator())
    with pytest.raises(AttackConfigError, match="needs a model"):
        build_attack("nn_invariance_l0")(None, x, y, generator=torch.Generator())


def test_the_attack_refuses_colour_images() -> None:
    data = load_dataset("mnist", "test")
    context = AttackContext(data.images[:100], data.labels[:100])
    x, y = torch.zeros(1, 3, 28, 28), torch.tensor([3])
    with pytest.raises(AttackConfigError, match="one-channel"):
        build_attack("nn_invariance_l0")(
            tiny_model(), x, y, generator=torch.Generator(), context=context
        )


def test_same_seed_same_examples() -> None:
    data = load_dataset("mnist", "test")
    x, y = data.as_float(slice(9000, 9004)), data.labels[9000:9004]
    context = AttackContext(data.images[:1000], data.labels[:1000])
    attack = build_attack("nn_invariance_l0", {"transforms": 32, "local_rounds": 2})

    runs = [
        attack(tiny_model(), x, y, generator=torch.Generator().manual_seed(seed), context=context)
        for seed in (7, 7, 8)
    ]

    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    assert torch.equal(runs[0].target, runs[1].target)
    assert not torch.equal(runs[0].x_adv, runs[2].x_adv)


# Fewer draws than the defaults (512 + 4 x 8 x 64), to keep this test near 15 s on one
# core: with the defaults the median is 29 changed pixels on the training pool.
TEST_CONFIG = {"transforms": 128, "refined": 2, "local_rounds": 6, "local_draws": 32}


def test_changed_pixels_on_tramer_sources_are_near_the_released_set() -> None:
    """Tramèr et al.'s released L0 set changes a median of 25 pixels of the binarised sources."""
    indices, images, labels = tramer_sources()
    pool = mnist_pool(excluded_test_indices=indices)
    model = load_zoo_model("mnist-small-cnn-standard")
    x = images.float() / 255.0
    started = time.perf_counter()

    output = build_attack("nn_invariance_l0", TEST_CONFIG)(
        model,
        x,
        labels,
        generator=torch.Generator().manual_seed(0),
        context=AttackContext(pool.images, pool.labels),
        keys=torch.from_numpy(indices),
    )

    seconds = time.perf_counter() - started
    changed = (output.x_adv != binarise(x)).flatten(1).sum(dim=1).float()
    with torch.no_grad():
        predicted_target = (model(output.x_adv).argmax(dim=1) == output.target).float().mean()
    record_figures(
        "invariance_l0_changed_pixels",
        {
            "pool": pool.description,
            "config": TEST_CONFIG,
            "sources": 100,
            "median_changed_pixels": float(changed.median()),
            "mean_changed_pixels": float(changed.mean()),
            "released_median_changed_pixels": 25,
            "reference_model_predicts_target": float(predicted_target),
            "seconds": round(seconds, 1),
        },
    )
    assert set(output.x_adv.unique().tolist()) <= {0.0, 1.0}
    assert all(
        target in TRAMER_TARGETS[label]
        for label, target in zip(labels.tolist(), output.target.tolist(), strict=True)
    )
    # Measured with this config: 32 (training pool), 34 (shipped test sample).
    assert changed.median() <= 45
    # Measured: 0.55 and 0.63. On the released set the same model still predicts the
    # source class for 53 of the 100 images.
    assert predicted_target >= 0.5
