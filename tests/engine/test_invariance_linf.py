"""The whole L-inf invariance attack (our transforms, our search) against the authors' release."""

import numpy as np
import torch

from attacks.engine.attacks import AttackContext, build_attack
from attacks.engine.attacks.invariance import TRAMER_TARGETS, ink_removed, project_towards
from tests.offline_data import TRAMER, mnist_pool, record_figures, tramer_sources


def released_targets(labels: torch.Tensor) -> list[int]:
    """The target class of each released eps=0.3 image: the authors' rule on their neighbours."""
    sources = np.load(TRAMER / "linf_X_test_100.npy").astype(np.float32)
    neighbours = np.load(TRAMER / "linf_all_nns.npy").astype(np.float32)
    classes = np.load(TRAMER / "linf_all_y_nns.npy")
    targets = []
    for i, label in enumerate(labels.tolist()):
        x = torch.from_numpy(sources[i])[None]
        allowed = [j for j in range(9) if int(classes[i, j]) in TRAMER_TARGETS[label]]
        removed = [
            float(
                ink_removed(
                    x[None],
                    project_towards(x, torch.from_numpy(neighbours[i, j])[None], 76.5)[None],
                )[0]
            )
            for j in allowed
        ]
        targets.append(int(classes[i, allowed[int(np.argmin(removed))]]))
    return targets


def test_whole_attack_reproduces_the_released_eps_03_set() -> None:
    indices, images, labels = tramer_sources()
    pool = mnist_pool(excluded_test_indices=indices)
    attack = build_attack("nn_invariance_linf", {"eps": 0.3})

    output = attack(
        None,
        images.float() / 255.0,
        labels,
        generator=torch.Generator(),
        context=AttackContext(pool.images, pool.labels),
    )

    ours = output.x_adv.double().numpy().reshape(100, 28, 28) * 255.0
    released = np.load(TRAMER / "linf_automated_eps03.npy").astype(np.float64)
    same_image = [bool(np.abs(ours[i] - released[i]).max() < 1e-3) for i in range(100)]
    same_target = [
        a == b for a, b in zip(output.target.tolist(), released_targets(labels), strict=True)
    ]
    record_figures(
        "invariance_linf_agreement",
        {
            "pool": pool.description,
            "sources": 100,
            "same_target_as_released": sum(same_target),
            "same_image_as_released": sum(same_image),
        },
    )
    if pool.is_full_training_set:
        # The authors' pool: every neighbour, hence every image, must be theirs.
        assert sum(same_image) == 100
        assert sum(same_target) == 100
    else:
        # A tenth of their pool: other neighbours, but the same kind of answer.
        assert sum(same_target) >= 50


def test_l2_variant_projects_the_same_neighbours_onto_the_l2_ball() -> None:
    indices, images, labels = tramer_sources()
    pool = mnist_pool(excluded_test_indices=indices)
    context = AttackContext(pool.images, pool.labels)
    x = images[:6].float() / 255.0

    small = build_attack("nn_invariance_l2", {"eps": 1.5})(
        None, x, labels[:6], generator=torch.Generator(), context=context
    )
    huge = build_attack("nn_invariance_l2", {"eps": 1000.0})(
        None, x, labels[:6], generator=torch.Generator(), context=context
    )

    # A small budget binds: the image lands on the sphere (the box cannot bind
    # before the ball here, as the neighbour is inside the box).
    norms = (small.x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 1.5), atol=1e-4)
    # An unbounded budget leaves the aligned neighbour itself: 8-bit values.
    pixels = huge.x_adv * 255.0
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)
    assert ((huge.x_adv - x).abs().flatten(1).amax(dim=1) > 0.5).all()
