import gzip
import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attacks.engine.datasets import SAMPLE_DIR, DatasetUnavailable, load_dataset, read_idx

PUBLISHED_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def test_shipped_sample_is_the_published_mnist_test_set() -> None:
    for name, md5 in PUBLISHED_MD5.items():
        assert hashlib.md5((SAMPLE_DIR / "mnist" / name).read_bytes()).hexdigest() == md5


def test_shipped_sample_loads_without_any_data_dir() -> None:
    data = load_dataset("mnist", "test")

    assert data.images.shape == (10000, 1, 28, 28)
    assert data.images.dtype == torch.uint8
    assert data.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(data.labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


def test_offline_folder_is_read_gzipped_or_not(tmp_path: Path) -> None:
    for name in PUBLISHED_MD5:
        raw = gzip.decompress((SAMPLE_DIR / "mnist" / name).read_bytes())
        (tmp_path / name.removesuffix(".gz")).write_bytes(raw)

    from_folder = load_dataset("mnist", "test", str(tmp_path))

    assert torch.equal(from_folder.images, load_dataset("mnist", "test").images)


def test_missing_split_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="ADVSTUDY_DATA_DIR"):
        load_dataset("mnist", "train", str(tmp_path))


def test_unknown_dataset_is_refused() -> None:
    with pytest.raises(DatasetUnavailable, match="unknown dataset"):
        load_dataset("imagenet", "test")


def test_truncated_idx_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "t10k-labels-idx1-ubyte"
    shutil.copy(SAMPLE_DIR / "mnist" / "t10k-labels-idx1-ubyte.gz", tmp_path / "x.gz")
    broken.write_bytes(gzip.decompress((tmp_path / "x.gz").read_bytes())[:100])

    with pytest.raises(ValueError, match="expected 10000 values"):
        read_idx(broken)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_our_idx_reader_matches_torchvisions_mnist_reader(tmp_path: Path) -> None:
    import torchvision

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in PUBLISHED_MD5:
        raw.joinpath(name.removesuffix(".gz")).write_bytes(
            gzip.decompress((SAMPLE_DIR / "mnist" / name).read_bytes())
        )
    # torchvision checks that all four files exist; the training pair is not read here.
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((1, 28, 28)))
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(1))

    theirs = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    ours = load_dataset("mnist", "test", str(tmp_path / "empty-elsewhere"))

    assert torch.equal(ours.images[:, 0], theirs.data)
    assert torch.equal(ours.labels, theirs.targets)


def test_fashion_mnist_is_read_from_torchvisions_layout(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    write_idx(raw / "t10k-images-idx3-ubyte", images)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([9, 0, 3, 3, 1]))

    data = load_dataset("fashion_mnist", "test", str(tmp_path))

    assert data.classes[9] == "Ankle boot"
    assert data.labels.tolist() == [9, 0, 3, 3, 1]
    assert torch.equal(data.images[:, 0], torch.from_numpy(images.astype(np.uint8)))


def test_cifar10_is_read_from_its_python_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rows = np.random.default_rng(1).integers(0, 256, (4, 3072)).astype(np.uint8)
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump({b"data": rows, b"labels": [3, 8, 8, 0]}, handle)

    data = load_dataset("cifar10", "test", str(tmp_path))

    assert data.images.shape == (4, 3, 32, 32)
    assert data.classes[3] == "cat"
    # Rows are the red plane, then green, then blue, each row-major (the format's definition).
    assert int(data.images[1, 2, 0, 1]) == int(rows[1, 2 * 1024 + 1])
    with pytest.raises(DatasetUnavailable):
        load_dataset("cifar10", "train", str(tmp_path))
