"""The largest real datasets this machine holds offline, for tests that compare with papers.

CI runs with ``../shared`` beside the clone (the full MNIST files); a fresh
machine has only the shipped test-set sample. Tests that reproduce published
results say which pool they used, and hold the stricter bar when the full
training set is there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attacks.engine.datasets import load_dataset

REPO = Path(__file__).resolve().parents[1]
TRAMER = REPO / "tests" / "data" / "tramer2020"


@dataclass(frozen=True)
class Pool:
    description: str
    images: torch.Tensor  # (N, 1, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64
    is_full_training_set: bool


def mnist_folders() -> list[Path]:
    configured = os.environ.get("ADVSTUDY_DATA_DIR")
    candidates = [Path(configured)] if configured else []
    return [*candidates, REPO.parent / "shared" / "data" / "mnist"]


def mnist_pool(excluded_test_indices: np.ndarray) -> Pool:
    """MNIST's 60,000 training images if a folder holds them, else the shipped test
    sample without ``excluded_test_indices`` (the sources, which must not be their
    own neighbours)."""
    for folder in mnist_folders():
        if (folder / "train-images-idx3-ubyte.gz").exists() or (
            folder / "train-images-idx3-ubyte"
        ).exists():
            train = load_dataset("mnist", "train", data_dir=str(folder))
            return Pool(f"MNIST train (60,000) from {folder}", train.images, train.labels, True)
    test = load_dataset("mnist", "test")
    keep = torch.ones(len(test.labels), dtype=torch.bool)
    keep[torch.from_numpy(excluded_test_indices)] = False
    return Pool(
        f"shipped MNIST test sample without the sources ({int(keep.sum())})",
        test.images[keep],
        test.labels[keep],
        False,
    )


def tramer_sources() -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Tramèr et al.'s 100 MNIST test indices, their images (uint8) and labels."""
    indices = np.load(TRAMER / "indexs.npy")
    test = load_dataset("mnist", "test")
    chosen = torch.from_numpy(indices)
    return indices, test.images[chosen], test.labels[chosen]


def record_figures(name: str, figures: dict[str, object]) -> None:
    """Keep a test's measured figures as an artefact (test-artifacts/NAME.json) and print them."""
    folder = REPO / "test-artifacts"
    folder.mkdir(exist_ok=True)
    text = json.dumps(figures, indent=2, sort_keys=True)
    (folder / f"{name}.json").write_text(text + "\n")
    print(f"{name}: {text}")
