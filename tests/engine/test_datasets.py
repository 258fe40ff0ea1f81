import gzip
import hashlib
import shutil
from pathlib import Path

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
