"""Datasets registered from an ImageFolder (a folder or a zip of ``class/*.png|jpg``): the
command and the page import them with their class names, shape and checksum; archives
that cannot be imported are refused with a sentence naming the file, and nothing is
stored; a registered dataset is then loaded, offered and attacked like a built-in one."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from attacks.datasets import configured_dataset
from attacks.engine.datasets import DATASETS
from attacks.models import DatasetSplit, RegisteredDataset

CLASSES = ("apple", "banana", "cherry")


def colour_image(label: int, index: int, size: int = 32) -> Image.Image:
    """A colour image whose mean colour tells its class: red, green or blue, brightening."""
    rng = np.random.default_rng(label * 100 + index)
    pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    pixels[..., label] = 150 + (3 * index) % 100
    return Image.fromarray(pixels, "RGB")


def image_folder(root: Path, per_class: int = 8, size: int = 32, offset: int = 0) -> Path:
    """3 classes of RGB images, PNG and JPEG mixed (JPEG for every fourth)."""
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            image = colour_image(label, index + offset, size)
            suffix = "jpg" if index % 4 == 3 else "png"
            image.save(root / name / f"{index:03d}.{suffix}", quality=95)
    return root


def zipped(folder: Path, path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):  # folders too, as `zip -r` writes them
            archive.write(file, prefix + file.relative_to(folder).as_posix())
    return path


def stored_dataset_files() -> set[str]:
    storage = DatasetSplit._meta.get_field("images").storage
    return set(storage.listdir("datasets")[1]) if storage.exists("datasets") else set()


def import_by_command(name: str, **options: object) -> str:
    output = io.StringIO()
    call_command("import_dataset", name, stdout=output, **options)
    return output.getvalue()


# The command ---------------------------------------------------------------------------


def test_the_command_imports_a_colour_folder_with_its_classes_shape_and_checksum(
    db, tmp_path
) -> None:
    folder = image_folder(tmp_path / "fruit")
    train = image_folder(tmp_path / "fruit-train", per_class=10, offset=20)

    printed = import_by_command("fruit", folder=folder)
    import_by_command("fruit", folder=train, split="train")

    dataset = RegisteredDataset.objects.get(name="fruit")
    assert (dataset.classes, dataset.channels, dataset.size) == (list(CLASSES), 3, 32)
    assert dataset.created_by is None
    test = dataset.splits.get(split="test")
    assert (test.count, test.class_counts, test.source_kind) == (24, [8, 8, 8], "folder")
    assert dataset.splits.get(split="train").class_counts == [10, 10, 10]
    assert "24 colour images of 32x32" in printed
    assert "apple 8, banana 8, cherry 8" in printed
    assert "no train split" in printed  # said before the train split came
    loaded = configured_dataset("fruit", "test")
    assert loaded.images.shape == (24, 3, 32, 32)
    assert loaded.classes == CLASSES
    assert loaded.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    # The pixels are the files' own (the PNGs exactly), in sorted order, channels first.
    first_banana = np.asarray(Image.open(folder / "banana" / "000.png")).transpose(2, 0, 1)
    assert np.array_equal(loaded.images[8].numpy(), first_banana)
    assert DATASETS["fruit"].channels == 3
    assert DATASETS["fruit"].size == 32
    assert len(configured_dataset("fruit", "train")) == 30


def test_a_zip_keeps_its_sha256_and_a_grey_set_is_resized_when_asked(db, tmp_path) -> None:
    folder = tmp_path / "grey"
    for label, name in enumerate(("b", "a")):
        (folder / name).mkdir(parents=True)
        for index in range(3):
            Image.new("L", (40, 40), 80 * label + index).save(folder / name / f"{index}.png")
    archive = zipped(folder, tmp_path / "grey.zip", prefix="grey/")

    import_by_command("grey", zip=archive, resize=16)

    dataset = RegisteredDataset.objects.get(name="grey")
    assert (dataset.classes, dataset.channels, dataset.size) == (["a", "b"], 1, 16)
    split = dataset.splits.get()
    assert split.archive_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (split.source_kind, split.resized_to) == ("zip", 16)
    assert configured_dataset("grey", "test").images.shape == (6, 1, 16, 16)


def write_mixed_sizes(root: Path) -> Path:
    image_folder(root)
    colour_image(1, 0, 28).save(root / "banana" / "005.png")
    return root


def write_empty_class(root: Path) -> Path:
    image_folder(root)
    (root / "durian").mkdir()
    return root


def write_corrupt(root: Path) -> Path:
    image_folder(root)
    (root / "cherry" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def write_truncated(root: Path) -> Path:
    image_folder(root)
    whole = (root / "cherry" / "003.jpg").read_bytes()
    (root / "cherry" / "003.jpg").write_bytes(whole[: len(whole) // 2])
    return root


def write_flat(root: Path) -> Path:
    root.mkdir()
    colour_image(0, 0).save(root / "one.png")
    return root


def write_too_large(root: Path) -> Path:
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        colour_image(0, 0, 300).save(root / name / "big.png")
    return root


REFUSALS = {
    "mixed sizes": (
        write_mixed_sizes,
        "images differ in size: apple/000.png is 32x32 but banana/005.png is 28x28",
    ),
    "empty class": (write_empty_class, "class folder durian holds no images"),
    "corrupt": (write_corrupt, "cherry/002.png is not an image Pillow can read"),
    "truncated": (write_truncated, "cherry/003.jpg could not be decoded"),
    "no class folders": (write_flat, "has no class folders"),
    "too large": (write_too_large, "apple/big.png is 300x300; images may be at most 256x256"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_the_command_refuses_what_cannot_be_imported_and_stores_nothing(db, tmp_path, case) -> None:
    write, sentence = REFUSALS[case]
    folder = write(tmp_path / "bad")
    files_before = stored_dataset_files()

    with pytest.raises(CommandError, match=sentence.replace(".", r"\.")):
        import_by_command("bad", folder=folder)
    with pytest.raises(CommandError, match=sentence.replace(".", r"\.")):
        import_by_command("bad", zip=zipped(folder, tmp_path / "bad.zip"))

    assert not RegisteredDataset.objects.exists()
    assert not DatasetSplit.objects.exists()
    assert stored_dataset_files() == files_before


def test_too_many_images_and_a_second_split_of_other_classes_are_refused(
    db, tmp_path, settings
) -> None:
    folder = image_folder(tmp_path / "fruit")
    settings.ADVSTUDY_MAX_DATASET_IMAGES = 20
    with pytest.raises(CommandError, match="holds 24 images; an import holds at most 20"):
        import_by_command("fruit", folder=folder)
    settings.ADVSTUDY_MAX_DATASET_IMAGES = 100
    import_by_command("fruit", folder=folder)
    other = tmp_path / "other"
    (other / "kiwi").mkdir(parents=True)
    colour_image(0, 0).save(other / "kiwi" / "0.png")

    with pytest.raises(CommandError, match="The classes differ from fruit's"):
        import_by_command("fruit", folder=other, split="train")
    with pytest.raises(CommandError, match="has a test split already"):
        import_by_command("fruit", folder=folder)
    with pytest.raises(CommandError, match="mnist is a built-in dataset"):
        import_by_command("mnist", folder=folder)
    assert DatasetSplit.objects.count() == 1
