"""The imagefolder's images: read by child processes (analysis.exports.images and
read_files.py), stored in the zip a block at a time (ZipStream.stored_files), and
counted for the card with numpy (arrays.group_sums).

The round trip of the whole zip through the ``datasets`` library is in
test_exports.py; these tests pin what it cannot reach: answers taken out of order, a
file that cannot be read, a reader that dies or is stopped half way, another storage,
and byte-for-byte equality with the member-by-member zip writer.
"""

from __future__ import annotations

import hashlib
import io
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage

from analysis.exports import ExportRequest, export_bytes, images, source
from analysis.exports.arrays import group_sums
from analysis.exports.images import ChildReads, ImageReadError
from analysis.exports.zipstream import Files, ZipStream
from attacks import services as attack_services
from attacks.models import ClassifierModel, Example, GenerationJob
from study.models import Study
from tests.analysis.export_study import labelled_study

# ---- the reading processes ----


@pytest.fixture
def folder(tmp_path: Path) -> dict[str, bytes]:
    """Files of every awkward size under tmp_path: empty, one byte, exactly and just past
    one read, and several reads long."""
    sizes = [0, 1, 300, 1 << 16, (1 << 16) + 1, 200_000]
    rng = np.random.default_rng(0)
    files = {}
    for index, size in enumerate(sizes):
        name = f"examples/{index:02d}.png"
        files[name] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    (tmp_path / "examples").mkdir()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return files


def _same(got: Files, files: list[bytes]) -> None:
    assert got.sizes.tolist() == [len(data) for data in files]
    assert got.crcs.tolist() == [zlib.crc32(data) for data in files]
    assert got.data == b"".join(files)
    assert got.split() == files


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_each_request_gets_its_files_whatever_order_they_are_taken_in(
    tmp_path: Path, folder: dict[str, bytes], processes: int
) -> None:
    names = list(folder)
    reads = ChildReads(str(tmp_path), processes)
    try:
        reads.request(7, names[:4])
        reads.request(3, names[4:])
        reads.request(9, names[:1])  # fewer names than processes
        reads.request(11, [])

        _same(reads.result(9), [folder[names[0]]])
        _same(reads.result(3), [folder[name] for name in names[4:]])
        _same(reads.result(11), [])
        _same(reads.result(7), [folder[name] for name in names[:4]])
    finally:
        reads.close()


def test_a_file_that_cannot_be_read_stops_the_reads_with_its_name(
    tmp_path: Path, folder: dict[str, bytes]
) -> None:
    reads = ChildReads(str(tmp_path), 2)
    try:
        reads.request(1, [*folder, "examples/missing.png"])

        with pytest.raises(ImageReadError, match=r"examples/missing\.png: No such file"):
            reads.result(1)
        with pytest.raises(ImageReadError):  # and every later result, rather than a hang
            reads.result(2)
    finally:
        reads.close()


@pytest.mark.timeout(60)
def test_a_reader_that_dies_is_an_error_not_a_hang(
    tmp_path: Path, folder: dict[str, bytes]
) -> None:
    reads = ChildReads(str(tmp_path), 2)
    try:
        reads.request(1, list(folder))
        reads.result(1)
        reads._children[1]._started.wait()
        reads._children[1]._process.kill()
        reads.request(2, list(folder))

        with pytest.raises(ImageReadError, match="image reader stopped"):
            reads.result(2)
    finally:
        reads.close()


def _image_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("export-image")]


def test_closing_with_answers_untaken_ends_the_processes_and_threads(
    tmp_path: Path, folder: dict[str, bytes]
) -> None:
    reads = ChildReads(str(tmp_path), 2)
    for tag in range(50):  # 13 MB of answers that nobody takes
        reads.request(tag, list(folder))

    reads.close()

    processes = [child._process for child in reads._children]
    assert all(process is not None and process.returncode is not None for process in processes)
    assert _image_threads() == []


# ---- the zip, a block at a time ----


def _members(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 2_000, count)
    return [
        (f"images/{index}-é.png", rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        for index, size in enumerate(sizes)
    ]


def _stored_files(archive: ZipStream, members: list[tuple[str, bytes]]) -> bytes:
    names = pa.array([name for name, _ in members], pa.string())
    return archive.stored_files(names, Files.of([data for _, data in members]))


@pytest.mark.parametrize("start", [0, 1_000, 2**32 - 5_000])  # the last passes 4 GiB
def test_a_block_of_files_is_stored_as_member_by_member_would_store_it(start: int) -> None:
    blocks = [_members(300, seed=1), _members(0, seed=2), _members(1, seed=3)]
    by_block, by_member = ZipStream(), ZipStream()
    by_block._offset = by_member._offset = start

    block_bytes = [_stored_files(by_block, block) for block in blocks]
    member_bytes = [by_member.stored_members(block) for block in blocks]

    assert block_bytes == member_bytes
    assert b"".join(by_block.finish()) == b"".join(by_member.finish())


def test_a_zip_of_blocks_of_files_reads_back() -> None:
    members = _members(500, seed=4)
    archive = ZipStream()

    data = b"".join([_stored_files(archive, members[:200]), _stored_files(archive, members[200:])])
    data += b"".join(archive.finish())

    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        assert zipped.testzip() is None
        assert [(info.filename, zipped.read(info)) for info in zipped.infolist()] == members


# ---- counts for the card ----


def test_group_sums_are_pandas_groupby_sums() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "setting": rng.integers(1, 6, 2_000),
            "kind": rng.choice(["main", "control", "é"], 2_000),
            "job": rng.integers(100, 103, 2_000),
            "a": rng.integers(0, 30, 2_000),
            "b": rng.integers(0, 3, 2_000),
        }
    )
    table = pa.Table.from_pandas(frame).to_batches(max_chunksize=700)  # several chunks
    chunked = pa.Table.from_batches(table)

    sums = group_sums(
        [chunked.column(key) for key in ("setting", "kind", "job")],
        [chunked.column("a"), chunked.column("b")],
    )

    grouped = frame.groupby(["setting", "kind", "job"]).agg(
        n=("a", "size"), a=("a", "sum"), b=("b", "sum")
    )
    expected = {
        key: [int(n) for n in row] for key, row in zip(grouped.index, grouped.values, strict=True)
    }
    assert sums == expected


# ---- through the export ----


@pytest.fixture
def study(trained_model: ClassifierModel, make_study) -> Study:
    return labelled_study(make_study)


def _zip_with_no_reader(study: Study, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The study's zip, checked to have started no reading process."""
    spawned: list[object] = []
    monkeypatch.setattr(images, "ChildReads", lambda *args: spawned.append(args))
    data = b"".join(export_bytes(study, ExportRequest("examples", "hf")))
    assert spawned == []
    return data


def _zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        return {name: zipped.read(name) for name in zipped.namelist() if name != "README.md"}


def test_images_in_another_storage_are_read_through_it(
    study: Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    field = Example._meta.get_field("image")
    from_files = b"".join(export_bytes(study, ExportRequest("examples", "hf")))
    memory = InMemoryStorage()
    for example in Example.objects.filter(study_items__study=study).distinct():
        with example.image.open("rb") as image:
            memory.save(example.image.name, image)
    monkeypatch.setattr(field, "storage", memory)

    from_memory = _zip_with_no_reader(study, monkeypatch)

    assert _zip_members(from_memory) == _zip_members(from_files)


def test_the_images_are_asked_for_once_each_in_key_order(
    study: Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source, "BLOCK_ROWS", 2)
    monkeypatch.setattr(source, "FIRST_BLOCK_ROWS", 1)
    asked: list[tuple[int, list[str]]] = []
    real = images.ChildReads

    class Recording(real):  # type: ignore[misc, valid-type]
        def request(self, tag: int, names: list[str]) -> None:
            asked.append((tag, names))
            super().request(tag, names)

    monkeypatch.setattr(images, "ChildReads", Recording)

    data = b"".join(export_bytes(study, ExportRequest("examples", "hf")))

    items = list(
        study.items.filter(kind__in=["main", "control"])
        .order_by("id")
        .values_list("id", "example__image")
    )
    assert [name for _, names in asked for name in names] == [image for _, image in items]
    assert [tag for tag, _ in asked] == sorted({tag for tag, _ in asked})  # in key order
    assert len(asked) >= 3
    assert len(_zip_members(data)) == len(items) + 1  # and the metadata


def test_a_reader_that_cannot_start_is_an_error_not_a_hang(
    tmp_path: Path, folder: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    reads = ChildReads(str(tmp_path), 2)
    try:
        reads.request(1, list(folder))

        with pytest.raises(ImageReadError, match="could not start"):
            reads.result(1)
    finally:
        reads.close()
    assert _image_threads() == []


def test_a_reader_that_exits_at_once_says_why(
    tmp_path: Path, folder: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "_CHILD", tmp_path / "missing_script.py")
    reads = ChildReads(str(tmp_path), 1)
    try:
        reads.request(1, list(folder))

        with pytest.raises(ImageReadError, match=r"exit status 2\): .*missing_script\.py"):
            reads.result(1)
    finally:
        reads.close()


# ---- from the jobs' packs ----


def _pack_every_job(study: Study) -> list[GenerationJob]:
    jobs = GenerationJob.objects.filter(examples__study_items__study=study).distinct()
    packed = [attack_services.pack_job_images(job.pk) for job in jobs]
    assert all(job is not None and job.image_pack for job in packed)
    return [job for job in packed if job is not None]


def test_images_in_packs_make_the_same_zip_and_start_no_reader(
    study: Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_files = b"".join(export_bytes(study, ExportRequest("examples", "hf")))
    _pack_every_job(study)

    from_packs = _zip_with_no_reader(study, monkeypatch)

    assert _zip_members(from_packs) == _zip_members(from_files)


def test_an_image_its_pack_does_not_hold_as_stored_is_read_from_its_file(
    study: Study, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A changed image (its row's SHA-256 no longer the pack's) and a pack that cannot be
    read: each of their images comes from its file, in its place among the packed."""
    monkeypatch.setattr(source, "BLOCK_ROWS", 3)  # blocks of several jobs and sources
    monkeypatch.setattr(source, "FIRST_BLOCK_ROWS", 3)
    first, second, _ = _pack_every_job(study)  # the main items', the controls', attention's
    changed = Example.objects.filter(job=first).order_by("pk")[1]
    new_image = b"\x89PNG changed after the pack was written"
    changed.image.storage.delete(str(changed.image.name))
    changed.image.storage.save(str(changed.image.name), ContentFile(new_image))
    Example.objects.filter(pk=changed.pk).update(image_sha256=hashlib.sha256(new_image).hexdigest())
    Path(second.image_pack.path).write_bytes(b"not a pack")

    data = b"".join(export_bytes(study, ExportRequest("examples", "hf")))

    members = _zip_members(data)
    analysed = Example.objects.filter(
        study_items__study=study, study_items__kind__in=["main", "control"]
    )
    stored = {f"images/{example.pk}.png": example.image.read() for example in analysed}
    assert {name: members[name] for name in stored} == stored
    assert members[f"images/{changed.pk}.png"] == new_image
    assert "left unused" in caplog.text
