"""Imports stay within a bounded memory, however well a hostile file compresses.

A small upload can unpack to gigabytes: an .npz of zeros, or a CSV of newlines.
Each is refused with its reason before it is unpacked; the child process that
imports it is measured, since only its own peak resident memory tells.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch
from django.core.exceptions import ValidationError
from django.db import connection

from attacks import imports
from attacks.engine.example_sets import MAX_EXAMPLES, MAX_ZIP_ENTRIES
from attacks.engine.images import encode_png
from attacks.models import AttackSetting

REPOSITORY = Path(__file__).resolve().parents[2]
MEMORY_BOUND_MB = 200
# Imports the file named in argv[1], and prints the refusal and the peak RSS growth.
IMPORT_AND_MEASURE = """
import json, sys
from pathlib import Path

import django

django.setup()
from django.core.exceptions import ValidationError

from attacks import imports
from attacks.datasets import configured_dataset


def status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


configured_dataset("mnist", "test")  # every import loads it once per process: not the file's
before = status_kb("VmRSS")
try:
    imports.import_examples(Path(sys.argv[1]), name="hostile", dataset="mnist", split="test")
    refusal = None
except ValidationError as error:
    refusal = "; ".join(error.messages)
print(json.dumps({"refusal": refusal, "growth_mb": (status_kb("VmHWM") - before) / 1024}))
"""


def database_url_of_the_tests() -> str:
    """The test database, for a child process that opens its own connection."""
    database = connection.settings_dict
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    password = f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else ""
    return (
        f"postgres://{quote(database['USER'])}{password}@{database['HOST']}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )


def import_in_a_child(path: Path) -> dict[str, object]:
    environment = {
        **os.environ,
        "DATABASE_URL": database_url_of_the_tests(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_MEASURE, str(path)],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return measured


def zeros_npz(folder: Path) -> Path:
    """1.5 MB of file that would unpack to 1.5 GB: two million blank MNIST images."""
    path = folder / "zeros.npz"
    count = 2_000_000
    np.savez_compressed(
        path,
        images=np.zeros((count, 28, 28), np.uint8),
        source_indices=np.zeros(count, np.int64),
    )
    return path


def float_zeros_npz(folder: Path) -> Path:
    """Few enough images, but as float64 they unpack past the byte budget."""
    path = folder / "float.npz"
    count = 11_000
    np.savez_compressed(
        path, images=np.zeros((count, 28, 28)), source_indices=np.zeros(count, np.int64)
    )
    return path


def newlines_zip(folder: Path) -> Path:
    """33 kB of zip whose CSV is 32 MiB of newlines."""
    path = folder / "newlines.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        header = "file_name,source_index"
        archive.writestr("set/examples.csv", header + "\n" * ((32 << 20) - len(header)))
    return path


@pytest.mark.parametrize(
    ("write_file", "refusal"),
    [
        (zeros_npz, "the set holds 2000000 images; an import holds at most 100000"),
        (float_zeros_npz, "the arrays unpack to 69080000 bytes; an .npz may unpack to at most"),
        (newlines_zip, "the CSV unpacks to 33554432 bytes; it may have at most 16777216"),
    ],
)
def test_a_file_that_unpacks_to_gigabytes_is_refused_in_bounded_memory(
    tmp_path, db, write_file, refusal
) -> None:
    path = write_file(tmp_path)

    measured = import_in_a_child(path)

    assert str(measured["refusal"]).startswith(refusal)
    assert float(str(measured["growth_mb"])) < MEMORY_BOUND_MB
    assert not AttackSetting.objects.exists()


def mnist_images(count: int) -> np.ndarray:
    generator = np.random.default_rng(0)
    return generator.integers(0, 256, (count, 28, 28), dtype=np.uint8)


def png_zip(folder: Path, csv_text: str, images: dict[str, bytes], name: str = "set.zip") -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("set/examples.csv", csv_text)
        for file_name, payload in images.items():
            archive.writestr(f"set/{file_name}", payload)
    return path


def png(image: np.ndarray) -> bytes:
    return encode_png(torch.from_numpy(image)[None])


def test_small_sets_still_import(tmp_path, db) -> None:
    images = mnist_images(4)
    npz = tmp_path / "small.npz"
    np.savez(npz, images=images, source_indices=np.arange(4))
    rows = "".join(f"x{i}.png,{i}\n" for i in range(4))
    pngs = {f"x{i}.png": png(image) for i, image in enumerate(images)}
    zipped = png_zip(tmp_path, "file_name,source_index\n" + rows + "\n", pngs)

    from_npz = imports.import_examples(npz, name="small-npz", dataset="mnist", split="test")
    from_zip = imports.import_examples(zipped, name="small-zip", dataset="mnist", split="test")

    assert from_npz.examples.count() == from_zip.examples.count() == 4
    assert list(from_zip.examples.order_by("position").values_list("source_index", flat=True)) == [
        0,
        1,
        2,
        3,
    ]


@pytest.mark.parametrize(
    ("csv_text", "pngs", "refusal"),
    [
        (
            "file_name,source_index\n" + "\n" * (MAX_EXAMPLES + 1),
            {},
            f"the CSV has more than {MAX_EXAMPLES} lines after its header",
        ),
        (
            "file_name,source_index\nx0.png,0\n",
            {"x0.png": b"\0" * (2 << 20)},
            "x0.png unpacks to 2097152 bytes; a PNG may have at most 1048576",
        ),
    ],
)
def test_a_csv_or_png_beyond_its_cap_is_refused(tmp_path, db, csv_text, pngs, refusal) -> None:
    path = png_zip(tmp_path, csv_text, pngs)

    with pytest.raises(ValidationError, match=refusal):
        imports.import_examples(path, name="capped", dataset="mnist", split="test")

    assert not AttackSetting.objects.exists()


def test_a_zip_with_too_many_files_is_refused_before_its_directory_is_read(tmp_path, db) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number in range(MAX_ZIP_ENTRIES + 1):
            archive.writestr(f"set/x{number}.png", b"")
    path = tmp_path / "many.zip"
    path.write_bytes(buffer.getvalue())

    with pytest.raises(ValidationError, match=f"may hold at most {MAX_ZIP_ENTRIES} files"):
        imports.import_examples(path, name="many", dataset="mnist", split="test")

    assert not AttackSetting.objects.exists()


def largest_uint8_npz(folder: Path) -> Path:
    """As many 8-bit MNIST images as the byte budget takes (63,000, 48 MiB unpacked)."""
    path = folder / "uint8.npz"
    count = 63_000
    np.savez(path, images=mnist_images(count), source_indices=np.arange(count) % 10_000)
    return path


def largest_float_npz(folder: Path) -> Path:
    """As many float32 images on the 0-1 scale as the byte budget takes (16,000)."""
    path = folder / "float32.npz"
    count = 16_000
    images = mnist_images(count).astype(np.float32) / 255
    np.savez(path, images=images, source_indices=np.arange(count) % 10_000)
    return path


@pytest.mark.parametrize("write_file", [largest_uint8_npz, largest_float_npz])
def test_the_largest_set_the_limits_allow_imports_within_the_memory_bound(
    tmp_path, transactional_db, write_file
) -> None:
    path = write_file(tmp_path)

    measured = import_in_a_child(path)

    assert measured["refusal"] is None
    assert float(str(measured["growth_mb"])) < MEMORY_BOUND_MB, measured
    assert AttackSetting.objects.get().examples.count() in (63_000, 16_000)
