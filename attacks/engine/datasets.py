"""Datasets as uint8 tensors, from torchvision, an offline folder or the shipped sample.

Images are kept as uint8 (N, C, H, W): they are what humans see, and the
0-255 scale is the one Tramèr et al.'s nearest-neighbour search works on.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable, Iterator, Mapping
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


OfflineLoader = Callable[[Path, str], "ImageDataset | None"]


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


def _find_file(directories: list[Path], stem: str) -> Path | None:
    for directory in directories:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _idx_loader(name: str, layouts: tuple[str, ...], classes: tuple[str, ...]) -> OfflineLoader:
    """IDX files (MNIST's format, also Fashion-MNIST's) in any of ``layouts`` under a folder."""

    def load(directory: Path, split: str) -> ImageDataset | None:
        folders = [directory / layout for layout in layouts]
        image_stem, label_stem = _IDX_FILES[split]
        image_path, label_path = _find_file(folders, image_stem), _find_file(folders, label_stem)
        if image_path is None or label_path is None:
            return None
        images = torch.from_numpy(read_idx(image_path).copy()).unsqueeze(1)
        labels = torch.from_numpy(read_idx(label_path).astype(np.int64))
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels")
        return ImageDataset(name, split, images, labels, classes)

    return load


def _load_cifar10(directory: Path, split: str) -> ImageDataset | None:
    """The python-pickle batches of CIFAR-10 (torchvision's ``cifar-10-batches-py`` layout)."""
    folder = directory / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if not all((folder / name).is_file() for name in names):
        return None
    images: list[np.ndarray] = []
    labels: list[int] = []
    for name in names:
        with (folder / name).open("rb") as handle:
            batch = pickle.load(
                handle, encoding="bytes"
            )  # the format is a pickle; local files only
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(int(label) for label in batch[b"labels"])
    return ImageDataset(
        "cifar10",
        split,
        torch.from_numpy(np.concatenate(images)),
        torch.tensor(labels, dtype=torch.int64),
        CIFAR10_CLASSES,
    )


def _download(name: str, root: Path, split: str) -> ImageDataset:
    import torchvision

    train = split == "train"
    if name == "cifar10":
        dataset = torchvision.datasets.CIFAR10(root=str(root), train=train, download=True)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        return ImageDataset(name, split, images, torch.tensor(dataset.targets), CIFAR10_CLASSES)
    source = {
        "mnist": torchvision.datasets.MNIST,
        "fashion_mnist": torchvision.datasets.FashionMNIST,
    }[name]
    dataset = source(root=str(root), train=train, download=True)
    images = dataset.data.unsqueeze(1).clone()
    return ImageDataset(name, split, images, dataset.targets.clone(), DATASETS[name].classes)


@dataclass(frozen=True)
class DatasetSpec:
    classes: tuple[str, ...]
    channels: int
    size: int
    offline: OfflineLoader
    # A researcher's registered dataset (attacks/dataset_imports.py): its loader reads its
    # own stored files, and there is nothing to download.
    stored: bool = False


DatasetResolver = Callable[[str], "DatasetSpec | None"]


class DatasetRegistry(Mapping[str, DatasetSpec]):
    """The built-in datasets, then whatever the resolver knows (the registered datasets).

    The engine never imports Django, so the app installs a resolver that reads its
    dataset rows (``set_dataset_resolver``); every ``DATASETS[name]`` then finds a
    registered dataset as it finds MNIST. Iterating lists the built-in ones only: which
    registered datasets a researcher may choose is the app's question.
    """

    def __init__(self, builtin: dict[str, DatasetSpec]) -> None:
        self._builtin = builtin
        self._resolver: DatasetResolver | None = None

    def __getitem__(self, name: str) -> DatasetSpec:
        if name in self._builtin:
            return self._builtin[name]
        spec = self._resolver(name) if self._resolver is not None else None
        if spec is None:
            raise KeyError(name)
        return spec

    def __iter__(self) -> Iterator[str]:
        return iter(self._builtin)

    def __len__(self) -> int:
        return len(self._builtin)

    @property
    def resolver(self) -> DatasetResolver | None:
        return self._resolver

    def set_resolver(self, resolver: DatasetResolver | None) -> None:
        self._resolver = resolver


@lru_cache(maxsize=8)
def read_stored_split(
    name: str, split: str, images: Path, labels: Path, classes: tuple[str, ...]
) -> ImageDataset:
    """A registered split: a uint8 (N, C, H, W) ``.npy`` and an int64 (N,) ``.npy``.

    Mapped copy-on-write, so a worker reads only the pages an attack touches, and the
    tensor is writable as torch wants without copying the file. Cached by path: a stored
    file never changes (its name is new for every import).
    """
    pixels = np.load(images, mmap_mode="c", allow_pickle=False)
    targets = np.load(labels, allow_pickle=False).astype(np.int64)
    if pixels.ndim != 4 or pixels.dtype != np.uint8 or pixels.shape[0] != targets.shape[0]:
        raise ValueError(f"{images}: not the uint8 (N, C, H, W) array of {name}/{split}")
    return ImageDataset(
        name, split, torch.from_numpy(pixels), torch.from_numpy(targets), tuple(classes)
    )


FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
BUILTIN_DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        MNIST_CLASSES, 1, 28, _idx_loader("mnist", ("", "MNIST/raw"), MNIST_CLASSES)
    ),
    "fashion_mnist": DatasetSpec(
        FASHION_MNIST_CLASSES,
        1,
        28,
        _idx_loader("fashion_mnist", ("fashion_mnist", "FashionMNIST/raw"), FASHION_MNIST_CLASSES),
    ),
    "cifar10": DatasetSpec(CIFAR10_CLASSES, 3, 32, _load_cifar10),
}
DATASETS = DatasetRegistry(BUILTIN_DATASETS)
DATASET_NAMES = tuple(BUILTIN_DATASETS)
SPLITS = tuple(_IDX_FILES)


def load_dataset(
    name: str, split: str, data_dir: str | None = None, download: bool = False
) -> ImageDataset:
    """Load ``name``/``split``: a registered dataset from its stored files; a built-in one
    from ``data_dir``, else the shipped sample, else a download."""
    spec = DATASETS.get(name)
    if spec is None:
        raise DatasetUnavailable(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise DatasetUnavailable(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if not spec.stored:
        return _load_builtin(name, split, data_dir, download)
    stored = spec.offline(Path(data_dir or "."), split)
    if stored is None:
        raise DatasetUnavailable(
            f"{name} has no {split} split; import one with "
            f"manage.py import_dataset {name} --split {split}"
        )
    return stored


@lru_cache(maxsize=8)
def _load_builtin(name: str, split: str, data_dir: str | None, download: bool) -> ImageDataset:
    """Cached per process: a GPU worker loads each split once."""
    searched = [Path(data_dir)] if data_dir else []
    searched.append(SAMPLE_DIR / name)
    for directory in searched:
        dataset = BUILTIN_DATASETS[name].offline(directory, split)
        if dataset is not None:
            return dataset
    if download and data_dir:
        return _download(name, Path(data_dir), split)
    where = ", ".join(str(d) for d in searched)
    raise DatasetUnavailable(
        f"{name}/{split} not found in {where}; set ADVSTUDY_DATA_DIR to a folder with its "
        "files, or ADVSTUDY_DOWNLOAD_DATASETS=1 to download it there"
    )


def set_dataset_resolver(resolver: DatasetResolver | None) -> None:
    """Let ``DATASETS`` find the datasets the app registered (None: built-in ones only)."""
    DATASETS.set_resolver(resolver)
