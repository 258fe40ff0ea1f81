"""A zip archive written as a stream of bytes, for members whose bytes (or whose CRC and
sizes) are known when they are added: no seeking back, no data descriptors.

Written by hand because the imagefolder export adds one small PNG per example, and
zipfile spends about 20 us on each member (a ZipInfo, its header and a data
descriptor through several layers), three times what reading the file costs: 50,000
images took it 1.4 s. Here a member is a CRC and two struct.pack calls. The format is
PKWARE's APPNOTE 6.3: local headers, the central directory, and the ZIP64 records
when an archive has 65,535 members or more, or passes 4 GiB.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator

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
# Every member is dated 1980-01-01 00:00, the earliest a zip can say, so that the same
# data makes the same bytes.
_DOS_TIME, _DOS_DATE = 0, (1 << 5) | 1
# The central directory waits in memory up to this size, then in a temporary file.
_SPOOL_BYTES = 16 << 20


class StagedMember:
    """A member written in pieces (and deflated as they come) before it is added: its
    bytes wait in a temporary file (in memory while small) until ``ZipStream.staged``."""

    def __init__(self, name: str, compression: int = DEFLATED, level: int = 1) -> None:
        self.name = name
        self.compression = compression
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -15) if compression else None
        self._file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        self.crc = 0
        self.size = 0
        self.stored_size = 0

    def write(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self._keep(self._deflate.compress(data) if self._deflate else data)

    def _keep(self, data: bytes) -> None:
        self.stored_size += len(data)
        self._file.write(data)

    def blocks(self, block_bytes: int = 1 << 20) -> Iterator[bytes]:
        """Its stored bytes, after the last write, then closes its file."""
        if self._deflate:
            self._keep(self._deflate.flush())
            self._deflate = None
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
        stored = zlib.compress(data, level, -15) if compression == DEFLATED else data
        return self._header(name.encode(), compression, crc, len(stored), len(data)) + stored

    def stored_members(self, members: Iterable[tuple[str, bytes]]) -> bytes:
        """Many stored members, headers and data, as one block of bytes."""
        parts: list[bytes] = []
        for name, data in members:
            parts.append(
                self._header(name.encode(), STORED, zlib.crc32(data), len(data), len(data))
            )
            parts.append(data)
        return b"".join(parts)

    def staged(self, member: StagedMember) -> Iterator[bytes]:
        """A staged member's header, then its bytes."""
        blocks = member.blocks()
        first = next(blocks, b"")  # flushes its compressor: the sizes are final after it
        name = member.name.encode()
        yield self._header(name, member.compression, member.crc, member.stored_size, member.size)
        yield first
        yield from blocks

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
            _LOCAL_SIGNATURE, version, 0, compression, _DOS_TIME, _DOS_DATE, crc,
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
            _CENTRAL_SIGNATURE, _MADE_BY_UNIX | version, version, 0, compression, _DOS_TIME,
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
