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


def read_all(names: list[bytes], folder: int) -> list[bytes]:
    """The files' bytes, in order. The loop of tens of thousands of small files: its
    calls are bound to local names (a tenth less time than a function per file)."""
    files: list[bytes] = []
    append, open_file, read, close = files.append, os.open, os.read, os.close
    flags = os.O_RDONLY | os.O_CLOEXEC
    for name in names:
        descriptor = open_file(name, flags, dir_fd=folder)
        try:
            data = read(descriptor, READ_BYTES)
            if len(data) == READ_BYTES:
                data += read_rest(descriptor)
        finally:
            close(descriptor)
        append(data)
    return files


def read_rest(descriptor: int) -> bytes:
    parts = []
    while part := os.read(descriptor, READ_BYTES):
        parts.append(part)
    return b"".join(parts)


def answer(tag: int, names: list[bytes], folder: int, output: BinaryIO) -> bool:
    """Writes the files' answer; False, after an error answer, if one cannot be read."""
    try:
        files = read_all(names, folder)
    except OSError as error:
        name = os.fsdecode(error.filename or b"?")
        message = f"{name}: {error.strerror}".encode()
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
