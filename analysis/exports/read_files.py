"""Reads files for the imagefolder export, run as a child process (``python -I -S
read_files.py <folder>``). It imports the standard library only: the export's process
imports it for its protocol's constants, the child runs it with nothing else.

Why a process: the zip holds one small PNG per example, and the kernel's open, read and
close of 50,000 of them take 0.2 s of CPU however they are called. In the export's
own process each of those system calls gives up Python's lock and takes it back, so
the reads ran no faster on two threads than on one and slowed the threads that make
the metadata; here they run on a core of their own.

Protocol, all integers little-endian. A request on stdin: a uint64 tag (the asker's
name for it), two uint32, the number of names and their byte length, then the names
(paths relative to <folder>, UTF-8, each ended by a NUL byte). Its answer on stdout:
the tag, a uint32, the number of files, then that many uint64 sizes, as many uint32
CRC-32s, and the files' bytes one after the other. A file that cannot be read
answers ERROR instead of the number, then a uint32 length and the UTF-8 message; the
process then ends. End of stdin ends it. Requests are answered in the order they come.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from typing import BinaryIO

ERROR = 0xFFFFFFFF
REQUEST = struct.Struct("<QII")  # tag, names, bytes
ANSWER = struct.Struct("<QI")  # tag, files (or ERROR)
LENGTH = struct.Struct("<I")
# A PNG of an example fits in one read of this size (MNIST's are about 300 bytes);
# a larger one takes more reads.
READ_BYTES = 1 << 16


def read_file(name: bytes, folder: int) -> bytes:
    descriptor = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=folder)
    try:
        data = os.read(descriptor, READ_BYTES)
        if len(data) < READ_BYTES:
            return data
        parts = [data]
        while part := os.read(descriptor, READ_BYTES):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(descriptor)


def answer(tag: int, names: list[bytes], folder: int, output: BinaryIO) -> bool:
    """Writes the files' answer; False, after an error answer, if one cannot be read."""
    files = []
    for name in names:
        try:
            files.append(read_file(name, folder))
        except OSError as error:
            message = f"{name.decode(errors='replace')}: {error.strerror}".encode()
            output.write(ANSWER.pack(tag, ERROR) + LENGTH.pack(len(message)) + message)
            output.flush()
            return False
    sizes = array("Q", map(len, files))
    crcs = array("I", map(zlib.crc32, files))
    head = ANSWER.pack(tag, len(files))
    output.write(head + sizes.tobytes() + crcs.tobytes() + b"".join(files))
    output.flush()
    return True


def serve(folder: str, requests: BinaryIO, output: BinaryIO) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while len(head := requests.read(REQUEST.size)) == REQUEST.size:
            tag, count, length = REQUEST.unpack(head)
            names = requests.read(length).split(b"\0")[:count]
            if not answer(tag, names, descriptor, output):
                return
    finally:
        os.close(descriptor)


if __name__ == "__main__":
    if sys.byteorder != "little":  # the sizes and CRCs go out as the machine's arrays
        raise SystemExit("read_files.py writes little-endian arrays: a big-endian machine")
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
