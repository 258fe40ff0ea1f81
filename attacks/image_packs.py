"""A generation job's stored images in one file, for reading them all at once.

Every example keeps its own PNG file, served to the annotators and named in the exports
(core rule 1). A study's zip export, though, reads every image of it: 50,000 MNIST PNGs
took the kernel 0.2 s of CPU to open, read and close, however they were called, more
than a third of the whole export. So when a job has stored all its examples, its
images are also written into one pack (attacks.services.pack_job_images): an Arrow IPC
file, read memory-mapped, with no copy, at any size.

A pack holds, one row per example, in ascending ``example_id``:

    example_id    int64
    image_sha256  string    the SHA-256 of the image, as the example's row records it
    crc32         uint32    the image's CRC-32, which a zip stores beside each member
    image         binary    the PNG's bytes

A reader uses a row only where its example id and SHA-256 are the example's own, and
reads any other example's file: a pack that is missing, partial or stale costs speed,
never a wrong image.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.int64(), nullable=False),
        pa.field("image_sha256", pa.string(), nullable=False),
        pa.field("crc32", pa.uint32(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),
    ]
)
# A record batch is written once it holds this many bytes of images (or rows): memory
# stays small while a pack of large images is written, and a reader's take stays
# inside a few batches (Arrow's take over many batches joins them all first).
BATCH_BYTES = 64 << 20
BATCH_ROWS = 65_536


class PackError(ValueError):
    """A file that is not an image pack, or whose rows are out of order."""


def write_pack(images: Iterable[tuple[int, str, bytes]], path: Path) -> int:
    """Writes ``(example id, SHA-256, PNG bytes)``, in ascending example id, as a pack at
    ``path``; the number of images written. The SHA-256 (hex) is the bytes' own, as
    the caller found it checking them against the example's row."""
    written, last_id = 0, -1
    batch: list[tuple[int, str, bytes]] = []
    batch_bytes = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
        for example_id, sha256, image in images:
            if example_id <= last_id:
                raise PackError(f"example {example_id} after {last_id}: ids must ascend")
            last_id = example_id
            batch.append((example_id, sha256, image))
            batch_bytes += len(image)
            if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_ROWS:
                writer.write_batch(_batch(batch))
                written, batch, batch_bytes = written + len(batch), [], 0
        if batch:
            writer.write_batch(_batch(batch))
            written += len(batch)
    return written


def _batch(images: list[tuple[int, str, bytes]]) -> pa.RecordBatch:
    ids, sha256s, data = zip(*images, strict=True)
    return pa.record_batch(
        [
            pa.array(ids, pa.int64()),
            pa.array(sha256s, pa.string()),
            pa.array([zlib.crc32(image) for image in data], pa.uint32()),
            pa.array(data, pa.binary()),
        ],
        schema=SCHEMA,
    )


@dataclass(frozen=True)
class PackedImages:
    """Some of a pack's images: their CRC-32s and bytes, as one large_binary array."""

    crcs: npt.NDArray[np.uint32]
    images: pa.LargeBinaryArray


class ImagePack:
    """A pack, memory-mapped: its images are read from the page cache as they are taken."""

    def __init__(self, path: Path) -> None:
        self._file = pa.memory_map(str(path))
        try:
            self._table = pa.ipc.open_file(self._file).read_all()
            # Offsets inside their buffers, SHA-256s UTF-8: a damaged file is refused
            # here rather than read out of bounds later (a full check: under 1 ms for 50,000).
            self._table.validate(full=True)
        except pa.ArrowException as error:
            self._file.close()
            raise PackError(f"{path} is not an image pack: {error}") from error
        if not self._table.schema.equals(SCHEMA):
            self._file.close()
            raise PackError(f"{path} is not an image pack: its columns are {self._table.schema}")
        self._ids = self._table.column("example_id").to_numpy()
        if len(self._ids) > 1 and not bool(np.all(self._ids[1:] > self._ids[:-1])):
            raise PackError(f"{path}: its example ids do not ascend")
        self._batch_starts = np.cumsum([0, *(len(chunk) for chunk in self._batches())])

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        """Unmaps the file (arrays taken from it stay valid: Arrow holds the mapping
        while they live)."""
        self._file.close()

    def find(self, example_ids: npt.NDArray[np.int64], sha256s: pa.Array) -> npt.NDArray[np.int64]:
        """Each example's row in the pack, or -1 where the pack holds no image of it with
        that SHA-256 (``sha256s``: the examples' own, as their rows record them)."""
        if not len(self._ids):
            return np.full(len(example_ids), -1, np.int64)
        rows = np.minimum(np.searchsorted(self._ids, example_ids), len(self._ids) - 1)
        found = self._ids[rows] == example_ids
        same = pc.equal(self._take("image_sha256", rows[found]), sha256s.filter(pa.array(found)))
        same = pc.fill_null(same, False).to_numpy(zero_copy_only=False)  # no SHA-256: no match
        found[np.flatnonzero(found)[~same]] = False
        return np.where(found, rows, -1)

    def take(self, rows: npt.NDArray[np.int64]) -> PackedImages:
        """The images at ``rows`` (from ``find``, none -1), in that order."""
        crcs = self._take("crc32", rows).to_numpy(zero_copy_only=False).astype(np.uint32)
        images = self._take("image", rows).cast(pa.large_binary())
        return PackedImages(crcs, images)

    def _batches(self) -> list[pa.Array]:
        return self._table.column("image").chunks

    def _take(self, column: str, rows: npt.NDArray[np.int64]) -> pa.Array:
        """``column`` at ``rows``, taken batch by batch: Arrow's take of a chunked column
        first joins every chunk (1.5 s for 100 rows of a 600 MB pack)."""
        chunks = self._table.column(column).chunks
        batch_of = np.searchsorted(self._batch_starts, rows, side="right") - 1
        pieces, order = [], []
        for batch in np.unique(batch_of):
            mine = np.flatnonzero(batch_of == batch)
            pieces.append(chunks[batch].take(pa.array(rows[mine] - self._batch_starts[batch])))
            order.append(mine)
        if len(pieces) < 2:
            return pieces[0] if pieces else pa.array([], self._table.schema.field(column).type)
        joined = pa.concat_arrays(pieces)
        return joined.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))
