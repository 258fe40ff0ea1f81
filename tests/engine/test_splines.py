"""Our torch cubic-spline transforms against scipy.ndimage itself, the authors' tool."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from attacks.engine import splines
from attacks.engine.attacks.invariance import TRAMER_ROTATIONS, TRAMER_SHIFTS
from attacks.engine.datasets import load_dataset


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_dataset("mnist", "test").images[:12, 0].numpy()


def test_prefilter_gives_coefficients_whose_spline_interpolates_the_samples() -> None:
    coefficients = np.random.default_rng(0).random((9, 13))
    samples = splines.spline_coefficients(torch.from_numpy(coefficients)[None])[0].numpy()
    assert np.allclose(samples, ndimage.spline_filter(coefficients, order=3, mode="mirror"))


@pytest.mark.parametrize("degrees", [-30.0, -13.0, 2.0, 7.3, 28.0, 90.0])
def test_rotation_matches_scipy_on_float_images(degrees: float) -> None:
    images = np.random.default_rng(1).random((4, 17, 23)) * 255
    matrix, offset = splines.rotation(degrees, 17, 23)
    ours = splines.affine_resample(
        torch.from_numpy(images), matrix.expand(4, 2, 2), offset.expand(4, 2)
    ).numpy()
    reference = np.stack([ndimage.rotate(image, degrees, reshape=False) for image in images])
    assert np.abs(ours - reference).max() < 1e-9


@pytest.mark.parametrize("shift", [(1.5, -3.0), (-1.5, 1.5), (3.0, 0.0), (0.3, -2.7)])
def test_shift_operators_match_scipy_on_float_images(shift: tuple[float, float]) -> None:
    images = np.random.default_rng(2).random((4, 17, 23)) * 255
    rows = splines.shift_operator(17, shift[0])
    columns = splines.shift_operator(23, shift[1])
    ours = (rows @ torch.from_numpy(images) @ columns.T).numpy()
    reference = np.stack([ndimage.shift(image, shift) for image in images])
    assert np.abs(ours - reference).max() < 1e-9


def test_uint8_rounding_matches_scipys_cast_including_overshoot() -> None:
    # A bright square: the cubic spline overshoots past 255 inside and below 0 beside it.
    image = np.zeros((9, 9), np.uint8)
    image[3:6, 3:6] = 255
    for shift in [(0.5, 0.5), (0.3, -0.7)]:
        resampled = ndimage.shift(image.astype(float), shift)
        assert resampled.max() > 255
        assert resampled.min() < 0
        ours = splines.round_like_scipy(torch.from_numpy(resampled)).numpy()
        assert np.array_equal(ours, ndimage.shift(image, shift))


def test_all_775_copies_equal_scipys_chained_uint8_transforms(digits: np.ndarray) -> None:
    """The authors' copies: shift(rotate(x, r, reshape=False), (tx, ty)), uint8 at each step."""
    ours = splines.transformed_copies(torch.from_numpy(digits[:3]), TRAMER_SHIFTS, TRAMER_ROTATIONS)
    grid = [(tx, ty, r) for tx in TRAMER_SHIFTS for ty in TRAMER_SHIFTS for r in TRAMER_ROTATIONS]
    for image, copies in zip(digits[:3], ours.numpy(), strict=True):
        reference = np.stack(
            [ndimage.shift(ndimage.rotate(image, r, reshape=False), (tx, ty)) for tx, ty, r in grid]
        )
        assert np.array_equal(copies, reference)


def test_per_image_transforms_match_scipy(digits: np.ndarray) -> None:
    degrees = torch.tensor([-30.0, 2.0, 14.0, 0.0])
    rows = torch.tensor([3.0, -1.5, 0.0, 1.5])
    columns = torch.tensor([-0.0, 1.5, -3.0, 3.0])
    ours = splines.rotate_then_shift_uint8(torch.from_numpy(digits[:4]), degrees, rows, columns)
    reference = np.stack(
        [
            ndimage.shift(ndimage.rotate(image, float(r), reshape=False), (float(a), float(b)))
            for image, r, a, b in zip(digits[:4], degrees, rows, columns, strict=True)
        ]
    )
    assert np.array_equal(ours.numpy(), reference)
