"""A Hugging Face ``imagefolder`` dataset as one zip, written as a stream.

    images/<id>.png    each image exactly as the annotators saw it
    metadata.jsonl     one row per image: ``file_name`` and the examples table's columns
    README.md          the dataset card: provenance (see card.py)

``datasets.load_dataset("imagefolder", data_dir=<unzipped>)`` reads it as it is.
One pass over the examples table: each block's images go out at once, stored (PNGs
do not deflate again), while its metadata rows are deflated into a staged member that
follows the last image, and its votes are summed for the card, which comes last: its
label counts are those of the rows written, from the same snapshot, and cost no
query of their own. The archive goes out while it is being made
(analysis.exports.zipstream).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
from django.core.files.storage import FileSystemStorage, Storage

from analysis.exports import tables
from analysis.exports.card import dataset_card, provenance
from analysis.exports.schema import Column
from analysis.exports.source import rendered_chunks
from analysis.exports.writers import json_lines
from analysis.exports.zipstream import DEFLATED, Piece, StagedMember, ZipStream, deflate_piece
from attacks.models import Example
from study.models import Study

# A PNG of an example fits in one read of this size (MNIST's are about 300 bytes);
# a larger one takes more reads.
_READ_BYTES = 1 << 16


def image_name(example_id: int) -> str:
    return f"images/{example_id}.png"


def imagefolder_bytes(
    study: Study, include_excluded: bool, on_rows: Callable[[int], None]
) -> Generator[bytes, None, None]:
    archive = ZipStream()
    table = tables.examples_table(study, include_excluded=include_excluded, with_images=True)
    metadata = StagedMember("metadata.jsonl", DEFLATED)
    render = partial(
        _block_members,
        columns=table.columns[:-1],  # all but the stored image's name
        votes=[(tables.vote_column(value), value) for value in tables.study_values(study)],
        read=image_reader(Example._meta.get_field("image").storage),
    )
    labels: Counter[tuple[int, str, int]] = Counter()
    with closing(rendered_chunks(table, render)) as blocks:
        for rows, block in blocks:
            metadata.write(block.metadata)
            labels.update(block.labels)
            yield archive.stored_members(block.images)
            on_rows(rows)
    yield from archive.staged(metadata)
    groups = [(*key, n) for key, n in sorted(labels.items()) if n]
    card = dataset_card(provenance(study, include_excluded=include_excluded, label_groups=groups))
    yield archive.member("README.md", card.encode(), DEFLATED)
    yield from archive.finish()


Reader = Callable[[pa.ChunkedArray], list[bytes]]


@dataclass(frozen=True)
class _Members:
    metadata: Piece  # of metadata.jsonl, deflated
    images: list[tuple[str, bytes]]  # name in the archive, PNG
    labels: dict[tuple[int, str, int], int]  # (setting id, item kind, answer): votes


def _block_members(
    chunk: pa.Table, columns: Sequence[Column], votes: list[tuple[str, int]], read: Reader
) -> _Members:
    """A block's part of the archive, made on the rendering threads, several at once."""
    lines = deflate_piece(json_lines(chunk.drop_columns([tables.STORED_IMAGE]), columns))
    names = chunk.column("file_name").to_pylist()
    images = read(chunk.column(tables.STORED_IMAGE))
    return _Members(lines, list(zip(names, images, strict=True)), _votes(chunk, votes))


def _votes(chunk: pa.Table, votes: list[tuple[str, int]]) -> dict[tuple[int, str, int], int]:
    """The block's votes by (setting, item kind, answer), for the card: from its vote
    columns (``(column, answer)``)."""
    sums = chunk.group_by(["setting_id", "item_kind"]).aggregate(
        [(column, "sum") for column, _ in votes]
    )
    found: dict[tuple[int, str, int], int] = {}
    for row in sums.to_pylist():
        for column, value in votes:
            found[(row["setting_id"], row["item_kind"], value)] = row[f"{column}_sum"]
    return found


def image_reader(storage: Storage) -> Reader:
    """Reads stored images by name: straight from the file system where they are files
    (Django's File objects cost as much again as the reads), through the storage
    otherwise."""
    # Exactly Django's (a subclass may open files its own way); __class__, not type():
    # default_storage is a lazy object that passes __class__ through.
    if storage.__class__ is not FileSystemStorage:
        return lambda names: [_read_stored(storage, name) for name in names.to_pylist()]
    root = os.fspath(storage.location) + os.sep
    return lambda names: [_read_file(root + name) for name in _inside(names).to_pylist()]


def _read_stored(storage: Storage, name: str) -> bytes:
    with storage.open(name, "rb") as image:
        return bytes(image.read())


# A stored name that could lead out of the storage's folder: absolute, or with "..".
_LEAVING = r"^[/\\]|(^|[/\\])\.\.([/\\]|$)"


def _inside(names: pa.ChunkedArray) -> pa.ChunkedArray:
    """The stored names, all checked at once; an error names the first that leaves."""
    leaving = pc.match_substring_regex(names, _LEAVING)
    if pc.any(leaving).as_py():
        name = names.filter(leaving)[0].as_py()
        raise ValueError(f"stored image name {name!r} leaves the media folder")
    return names


def _read_file(path: str) -> bytes:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        data = os.read(descriptor, _READ_BYTES)
        if len(data) < _READ_BYTES:
            return data
        parts = [data]
        while part := os.read(descriptor, _READ_BYTES):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(descriptor)
