"""Datasets as uint8 tensors, from torchvision, an offline folder or the shipped sample.

Images are kept as uint8 (N, C, H, W): they are what humans see, and the
0-255 scale is the one Tramèr et al.'s nearest-neighbour search works on.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

SAMPLE_DIR = Path(__file__).parent / "sample_data"

MNIST_CLASSES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type codes (LeCun's format); MNIST only uses unsigned bytes.
_IDX_UBYTE = 0x08


class DatasetUnavailable(LookupError):
    """The requested dataset split is in none of the places we look."""


@dataclass(frozen=True)
class ImageDataset:
    name: str
    split: str
    images: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,)
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def as_float(self, indices: torch.Tensor | slice | None = None) -> torch.Tensor:
        images = self.images if indices is None else self.images[indices]
        return images.float().div_(255.0)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped).

    Written by hand because torchvision's MNIST class only reads its own
    folder layout of uncompressed files, and we read the published ``.gz``
    files in place from any folder.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file")
    type_code, ndim = data[2], data[3]
    if type_code != _IDX_UBYTE:
        raise ValueError(f"{path}: IDX type 0x{type_code:02x} is not supported")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {np.prod(shape)} values, found {body.size}")
    return body.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (
        directory / stem,
        directory / f"{stem}.gz",
        directory / "MNIST" / "raw" / stem,
        directory / "MNIST" / "raw" / f"{stem}.gz",
    ):
        if candidate.is_file():
            return candidate
    return None


def _load_mnist_idx(directory: Path, split: str) -> ImageDataset | None:
    image_stem, label_stem = _IDX_FILES[split]
    image_path, label_path = _find_idx(directory, image_stem), _find_idx(directory, label_stem)
    if image_path is None or label_path is None:
        return None
    images = torch.from_numpy(read_idx(image_path).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(label_path).astype(np.int64))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels")
    return ImageDataset("mnist", split, images, labels, MNIST_CLASSES)


def _download_mnist(root: Path, split: str) -> ImageDataset:
    import torchvision

    dataset = torchvision.datasets.MNIST(root=str(root), train=split == "train", download=True)
    return ImageDataset(
        "mnist", split, dataset.data.unsqueeze(1).clone(), dataset.targets.clone(), MNIST_CLASSES
    )


DATASET_NAMES = ("mnist",)
SPLITS = tuple(_IDX_FILES)


@lru_cache(maxsize=8)
def load_dataset(
    name: str, split: str, data_dir: str | None = None, download: bool = False
) -> ImageDataset:
    """Load ``name``/``split`` from ``data_dir``, else the shipped sample, else download.

    Cached per process: a GPU worker loads each split once.
    """
    if name not in DATASET_NAMES:
        raise DatasetUnavailable(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise DatasetUnavailable(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    searched = [Path(data_dir)] if data_dir else []
    searched.append(SAMPLE_DIR / name)
    for directory in searched:
        dataset = _load_mnist_idx(directory, split)
        if dataset is not None:
            return dataset
    if download and data_dir:
        return _download_mnist(Path(data_dir), split)
    where = ", ".join(str(d) for d in searched)
    raise DatasetUnavailable(
        f"{name}/{split} not found in {where}; set ADVSTUDY_DATA_DIR to a folder with its IDX "
        "files, or ADVSTUDY_DOWNLOAD_DATASETS=1 to download it there"
    )
