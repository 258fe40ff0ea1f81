"""A zip archive written as a stream of bytes, for members whose bytes (or whose CRC and
sizes) are known when they are added: no seeking back, no data descriptors.

Written by hand because the imagefolder export adds one small PNG per example, and
zipfile spends about 20 us on each member (a ZipInfo, its header and a data
descriptor through several layers), three times what reading the file costs: 50,000
images took it 1.4 s. Here a block of members is a few numpy and Arrow calls
(``stored_files``), with the PNGs' CRCs taken where they are read. The format is
PKWARE's APPNOTE 6.3: local headers, the central directory, and the ZIP64 records
when an archive has 65,535 members or more, or passes 4 GiB.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from zlib_ng import zlib_ng

from analysis.exports.arrays import value_bytes, value_offsets

STORED, DEFLATED = 0, 8
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_LOCAL_SIGNATURE, _CENTRAL_SIGNATURE = 0x04034B50, 0x02014B50
_END_SIGNATURE, _END64_SIGNATURE, _LOCATOR64_SIGNATURE = 0x06054B50, 0x06064B50, 0x07064B50
_MAX_16, _MAX_32 = 0xFFFF, 0xFFFFFFFF
_VERSION, _VERSION64 = 20, 45  # 2.0: deflate; 4.5: ZIP64
_MADE_BY_UNIX = 3 << 8
_FILE_MODE = 0o644 << 16  # rw-r--r--, in the high half of the external attributes
# General purpose flag bit 11: names are UTF-8 (else readers take them for CP437).
_UTF8 = 1 << 11
# Every member is dated 1980-01-01 00:00, the earliest a zip can say, so that the same
# data makes the same bytes.
_DOS_TIME, _DOS_DATE = 0, (1 << 5) | 1
# The same records as numpy rows, to make a block of members' headers at once.
_LOCAL_RECORD = np.dtype(
    [
        ("signature", "<u4"), ("version", "<u2"), ("flags", "<u2"), ("method", "<u2"),
        ("time", "<u2"), ("date", "<u2"), ("crc", "<u4"), ("stored", "<u4"), ("size", "<u4"),
        ("name_length", "<u2"), ("extra_length", "<u2"),
    ]
)  # fmt: skip
_CENTRAL_RECORD = np.dtype(
    [
        ("signature", "<u4"), ("made_by", "<u2"), ("version", "<u2"), ("flags", "<u2"),
        ("method", "<u2"), ("time", "<u2"), ("date", "<u2"), ("crc", "<u4"), ("stored", "<u4"),
        ("size", "<u4"), ("name_length", "<u2"), ("extra_length", "<u2"),
        ("comment_length", "<u2"), ("disk", "<u2"), ("internal", "<u2"), ("external", "<u4"),
        ("offset", "<u4"),
    ]
)  # fmt: skip
assert (_LOCAL_RECORD.itemsize, _CENTRAL_RECORD.itemsize) == (_LOCAL.size, _CENTRAL.size)
# Room for a member's headers beyond its data and name, in the check for ZIP64.
_HEADER_ROOM = 256
# The central directory waits in memory up to this size, then in a temporary file.
_SPOOL_BYTES = 16 << 20


@dataclass(frozen=True)
class Files:
    """Files to store, as one block: their sizes, CRC-32s and bytes one after another."""

    sizes: npt.NDArray[np.uint64]
    crcs: npt.NDArray[np.uint32]
    data: bytes

    @classmethod
    def of(cls, files: list[bytes]) -> Files:
        return cls(
            np.fromiter(map(len, files), np.uint64, len(files)),
            np.fromiter(map(zlib.crc32, files), np.uint32, len(files)),
            b"".join(files),
        )

    @classmethod
    def joined(cls, parts: list[Files]) -> Files:
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([part.sizes for part in parts]),
            np.concatenate([part.crcs for part in parts]),
            b"".join(part.data for part in parts),
        )

    @classmethod
    def of_array(cls, crcs: npt.NDArray[np.uint32], images: pa.LargeBinaryArray) -> Files:
        """The files of a large_binary array (its values' bytes, one copy)."""
        sizes = np.diff(value_offsets(images)).astype(np.uint64)
        return cls(sizes, crcs, value_bytes(images).to_pybytes())

    def as_array(self) -> pa.LargeBinaryArray:
        """The files' bytes as a large_binary array (no copy)."""
        return _binaries(self.data, self.sizes)

    def split(self) -> list[bytes]:
        ends = np.cumsum(self.sizes).tolist()
        return [self.data[start:end] for start, end in zip([0, *ends], ends, strict=False)]


@dataclass(frozen=True)
class Piece:
    """Part of a member's bytes, as it goes into the archive: the CRC-32 and size of
    the part, and its stored bytes (deflated, or as they are)."""

    crc: int
    size: int
    stored: bytes


def deflate_piece(data: bytes, level: int = 2) -> Piece:
    """``data`` as raw deflate blocks that end on a byte boundary and are not the last:
    pieces made apart (on several threads) and put one after the other, then
    FINAL_BLOCK, are one deflate stream, as pigz makes them, and their CRCs combine
    into the member's. Each piece starts with an empty window, which costs little on
    pieces of megabytes.

    zlib-ng, not zlib: for the examples' 40 MB of JSON Lines (the imagefolder's
    metadata, before it was Parquet), level 2 took it 0.08 s
    for 5.4 MB where zlib's level 1 took 0.17 s for 6.3 MB; the stream is the same
    deflate that every unzip reads."""
    compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15)
    stored = compressor.compress(data) + compressor.flush(zlib_ng.Z_SYNC_FLUSH)
    return Piece(zlib_ng.crc32(data), len(data), stored)


def stored_piece(data: bytes) -> Piece:
    return Piece(zlib_ng.crc32(data), len(data), data)


# An empty last block: what ends a stream of pieces.
FINAL_BLOCK = zlib_ng.compressobj(1, zlib_ng.DEFLATED, -15).flush(zlib_ng.Z_FINISH)


class StagedMember:
    """A member written in pieces before it is added: its stored bytes wait in a
    temporary file (in memory while small) until ``ZipStream.staged``. A deflated
    member takes pieces from ``deflate_piece``, a stored one from ``stored_piece``."""

    def __init__(self, name: str, compression: int = DEFLATED) -> None:
        self.name = name
        self.compression = compression
        self._file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        self._finished = False
        self.crc = 0
        self.size = 0
        self.stored_size = 0

    def write(self, piece: Piece) -> None:
        if self._finished:
            raise ValueError(f"{self.name} is finished")
        self.crc = zlib_ng.crc32_combine(self.crc, piece.crc, piece.size)
        self.size += piece.size
        self._keep(piece.stored)

    def _keep(self, data: bytes) -> None:
        self.stored_size += len(data)
        self._file.write(data)

    def finish(self) -> None:
        """No more pieces: the sizes are final."""
        if not self._finished and self.compression == DEFLATED:
            self._keep(FINAL_BLOCK)
        self._finished = True

    def blocks(self, block_bytes: int = 1 << 20) -> Iterator[bytes]:
        """Its stored bytes, then closes its file."""
        self.finish()
        self._file.seek(0)
        try:
            while block := self._file.read(block_bytes):
                yield block
        finally:
            self._file.close()


class ZipStream:
    """The archive's bytes, member by member; ``finish`` gives its central directory."""

    def __init__(self) -> None:
        self._offset = 0
        self._count = 0
        self._central = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115

    def member(self, name: str, data: bytes, compression: int = STORED, level: int = 1) -> bytes:
        """One member whose bytes are all here: its local header and data."""
        crc = zlib.crc32(data)
        stored = zlib_ng.compress(data, level, -15) if compression == DEFLATED else data
        return self._header(name.encode(), compression, crc, len(stored), len(data)) + stored

    def stored_members(self, members: Iterable[tuple[str, bytes]]) -> bytes:
        """Stored members, headers and data, as one block of bytes, one at a time: for
        what ``stored_files`` does not take (a block that passes 4 GiB, whose members
        need ZIP64's fields)."""
        parts: list[bytes] = []
        for text, data in members:
            size = len(data)
            parts += (self._header(text.encode(), STORED, zlib.crc32(data), size, size), data)
        return b"".join(parts)

    def stored_files(self, names: pa.Array, files: Files) -> bytes:
        """``stored_members`` for a block of files, their headers made as numpy rows and
        joined with the names and data by Arrow: no Python per member. The same bytes;
        a block that would pass 4 GiB goes member by member, for ZIP64's fields."""
        count = len(files.sizes)
        encoded = names.cast(pa.large_binary())  # the names' UTF-8
        name_lengths = pc.binary_length(encoded).to_numpy().astype(np.uint64)
        ends = self._offset + np.cumsum(_LOCAL.size + name_lengths + files.sizes)
        if count == 0 or ends[-1] + _HEADER_ROOM >= _MAX_32:
            return self.stored_members(zip(names.to_pylist(), files.split(), strict=True))
        local = np.zeros(count, _LOCAL_RECORD)
        central = np.zeros(count, _CENTRAL_RECORD)
        for records in (local, central):
            records["version"], records["flags"], records["date"] = _VERSION, _UTF8, _DOS_DATE
            records["crc"], records["name_length"] = files.crcs, name_lengths
            records["stored"] = records["size"] = files.sizes
        local["signature"] = _LOCAL_SIGNATURE
        central["signature"], central["made_by"] = _CENTRAL_SIGNATURE, _MADE_BY_UNIX | _VERSION
        central["external"] = _FILE_MODE
        central["offset"] = np.concatenate([[self._offset], ends[:-1]])
        self._central.write(_joined(_records(central), encoded))
        self._offset, self._count = int(ends[-1]), self._count + count
        return _joined(_records(local), encoded, _binaries(files.data, files.sizes))

    def staged(self, member: StagedMember) -> Iterator[bytes]:
        """A staged member's header, then its bytes."""
        member.finish()
        name = member.name.encode()
        yield self._header(name, member.compression, member.crc, member.stored_size, member.size)
        yield from member.blocks()

    def finish(self) -> Iterator[bytes]:
        """The central directory and the end records."""
        start, size = self._offset, self._central.tell()
        self._central.seek(0)
        while block := self._central.read(1 << 20):
            yield block
        self._central.close()
        yield self._end_records(start, size)

    def _header(self, name: bytes, compression: int, crc: int, stored: int, size: int) -> bytes:
        """The member's local header; its central directory record is kept for ``finish``."""
        large = stored >= _MAX_32 or size >= _MAX_32
        version = _VERSION64 if large or self._offset >= _MAX_32 else _VERSION
        extra = struct.pack("<HHQQ", 1, 16, size, stored) if large else b""
        local = _LOCAL.pack(
            _LOCAL_SIGNATURE, version, _UTF8, compression, _DOS_TIME, _DOS_DATE, crc,
            _MAX_32 if large else stored, _MAX_32 if large else size, len(name), len(extra),
        ) + name + extra  # fmt: skip
        self._central.write(self._central_record(name, compression, crc, stored, size, version))
        self._offset += len(local) + stored
        self._count += 1
        return local

    def _central_record(
        self, name: bytes, compression: int, crc: int, stored: int, size: int, version: int
    ) -> bytes:
        # ZIP64's extra field holds, in this order, whichever of the three overflowed.
        wide = [value for value in (size, stored, self._offset) if value >= _MAX_32]
        extra = struct.pack(f"<HH{len(wide)}Q", 1, 8 * len(wide), *wide) if wide else b""
        return _CENTRAL.pack(
            _CENTRAL_SIGNATURE, _MADE_BY_UNIX | version, version, _UTF8, compression, _DOS_TIME,
            _DOS_DATE, crc, min(stored, _MAX_32), min(size, _MAX_32), len(name), len(extra),
            0, 0, 0, _FILE_MODE, min(self._offset, _MAX_32),
        ) + name + extra  # fmt: skip

    def _end_records(self, start: int, size: int) -> bytes:
        records = b""
        if self._count >= _MAX_16 or start >= _MAX_32 or size >= _MAX_32:
            end64_offset = start + size
            records += _END64.pack(
                _END64_SIGNATURE, 44, _MADE_BY_UNIX | _VERSION64, _VERSION64, 0, 0,
                self._count, self._count, size, start,
            )  # fmt: skip
            records += _LOCATOR64.pack(_LOCATOR64_SIGNATURE, 0, end64_offset, 1)
        count = min(self._count, _MAX_16)
        return records + _END.pack(
            _END_SIGNATURE, 0, 0, count, count, min(size, _MAX_32), min(start, _MAX_32), 0
        )


def _records(rows: np.ndarray) -> pa.Array:
    """Fixed-size numpy rows as Arrow binary values, one per row (no copy)."""
    offsets = np.arange(len(rows) + 1, dtype=np.int64) * rows.dtype.itemsize
    return _binaries(rows.tobytes(), offsets=offsets)


def _binaries(
    data: bytes, sizes: np.ndarray | None = None, offsets: np.ndarray | None = None
) -> pa.Array:
    if offsets is None:
        assert sizes is not None
        offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    return pa.Array.from_buffers(
        pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _joined(*columns: pa.Array) -> bytes:
    """Each row's values joined, then all rows, as one block of bytes."""
    joined = pc.binary_join_element_wise(*columns, pa.scalar(b"", pa.large_binary()))
    return value_bytes(joined).to_pybytes()
