"""The stored images of an export's examples, read while the rest of each block is made:
asked for with ``request(tag, rows)`` as soon as a block's rows are read, from any
thread, and taken with ``result(tag)`` when the block is written.

Where the images are files (Django's FileSystemStorage), each is taken from its
generation job's pack where that holds it (attacks/image_packs.py: one memory-mapped
file per job); the others, child processes read (analysis/exports/read_files.py,
which says why). Any other storage is read through the storage, in the taking
thread, when the result is taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, TypeGuard

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from django.core.files.storage import FileSystemStorage, Storage

from analysis.exports import read_files
from analysis.exports.source import usable_cores
from analysis.exports.tables import STORED_IMAGE
from analysis.exports.zipstream import Files
from attacks.image_packs import ImagePack, PackError

logger = logging.getLogger(__name__)

_CHILD = Path(read_files.__file__)


class ImageReadError(OSError):
    """A stored image that cannot be read: the export stops, as a missing row would."""


class ImageReads(Protocol):
    def request(self, tag: int, names: list[str]) -> None: ...
    def result(self, tag: int) -> Files: ...
    def close(self) -> None: ...


def example_images(storage: Storage, packs: dict[int, str]) -> ExampleImages:
    """The reads of an export's images; ``packs``: the stored name of each generation
    job's pack, by job id (those of jobs that have one), used where the storage is a
    folder (a pack is read memory-mapped)."""
    paths = (
        {job: Path(storage.path(name)) for job, name in packs.items()}
        if _is_file_system(storage)
        else {}
    )
    return ExampleImages(paths, lambda: image_reads(storage))


def image_reads(storage: Storage) -> ImageReads:
    if _is_file_system(storage):
        return ChildReads(os.fspath(storage.location), READ_PROCESSES)
    return StorageReads(storage)


def _is_file_system(storage: Storage) -> TypeGuard[FileSystemStorage]:
    # Exactly Django's (a subclass may open files its own way); __class__, not type():
    # default_storage is a lazy object that passes __class__ through.
    return storage.__class__ is FileSystemStorage


@dataclass(frozen=True)
class _Part:
    """Some of a request's images: their places in it, CRC-32s and bytes."""

    places: npt.NDArray[np.intp]
    crcs: npt.NDArray[np.uint32]
    images: pa.LargeBinaryArray


@dataclass(frozen=True)
class _Found:
    """Some of a request's images found in a pack: their places, and rows in the pack."""

    places: npt.NDArray[np.intp]
    pack: ImagePack
    rows: npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Requested:
    found: list[_Found]
    from_files: npt.NDArray[np.intp]  # the places of those asked of the file reads


class ExampleImages:
    """A block's images by its rows (``example_id``, ``job_id``, ``image_sha256`` and
    STORED_IMAGE): from the packs where they hold them, else read from their files by
    the reads that ``files()`` makes the first time one is needed (a study whose jobs
    all have packs starts no reading process). ``request`` only finds the images in the
    packs, on the query thread; ``result`` takes them from the memory maps."""

    def __init__(self, packs: dict[int, Path], files: Callable[[], ImageReads]) -> None:
        self._pack_paths = packs
        self._packs: dict[int, ImagePack | None] = {}
        self._make_files = files
        self._files: ImageReads | None = None
        self._requested: dict[int, _Requested] = {}

    def request(self, tag: int, rows: pa.Table) -> None:
        names = rows.column(STORED_IMAGE)
        check_inside_folder(names)
        found = self._in_packs(rows)
        unpacked = np.ones(rows.num_rows, bool)
        for part in found:
            unpacked[part.places] = False
        from_files = np.flatnonzero(unpacked)
        if len(from_files):
            self._file_reads().request(tag, names.take(from_files).to_pylist())
        self._requested[tag] = _Requested(found, from_files)

    def _in_packs(self, rows: pa.Table) -> list[_Found]:
        """Where the rows' images are in their jobs' packs, a part for each job."""
        example_ids = rows.column("example_id").to_numpy()
        job_ids = rows.column("job_id").to_numpy()
        parts = []
        for job_id in np.unique(job_ids):
            if (pack := self._pack(int(job_id))) is None:
                continue
            places = np.flatnonzero(job_ids == job_id)
            in_pack = pack.find(example_ids[places], rows.column("image_sha256").take(places))
            parts.append(_Found(places[in_pack >= 0], pack, in_pack[in_pack >= 0]))
        return parts

    def result(self, tag: int) -> Files:
        requested = self._requested.pop(tag)
        if not requested.found:
            return self._file_reads().result(tag)
        parts = [_taken(found) for found in requested.found]
        if len(requested.from_files):
            files = self._file_reads().result(tag)
            parts.append(_Part(requested.from_files, files.crcs, files.as_array()))
        return _in_order(parts)

    def _pack(self, job_id: int) -> ImagePack | None:
        if job_id not in self._packs:
            path = self._pack_paths.get(job_id)
            self._packs[job_id] = None if path is None else _opened(path)
        return self._packs[job_id]

    def _file_reads(self) -> ImageReads:
        if self._files is None:
            self._files = self._make_files()
        return self._files

    def close(self) -> None:
        """Ends the reading processes and unmaps the packs (the query thread has ended)."""
        if self._files is not None:
            self._files.close()
        self._requested.clear()
        for pack in self._packs.values():
            if pack is not None:
                pack.close()
        self._packs.clear()


def _taken(found: _Found) -> _Part:
    images = found.pack.take(found.rows)
    return _Part(found.places, images.crcs, images.images)


def _opened(path: Path) -> ImagePack | None:
    """The pack, or None (its images are then read from their files) where it cannot be
    read: a pack only ever saves time."""
    try:
        return ImagePack(path)
    except (OSError, PackError, pa.ArrowException) as error:
        logger.warning("image pack %s left unused: %s", path, error)
        return None


def _in_order(parts: list[_Part]) -> Files:
    """The parts' images as one block, in their places' order."""
    if not parts:
        return Files.of([])
    places = np.concatenate([part.places for part in parts])
    crcs = np.concatenate([part.crcs for part in parts])
    images = parts[0].images if len(parts) == 1 else pa.concat_arrays([p.images for p in parts])
    if len(places) and not bool(np.all(places[1:] > places[:-1])):
        order = np.argsort(places, kind="stable")
        crcs, images = crcs[order], images.take(pa.array(order))
    return Files.of_array(crcs, images)


# Child processes that read, each a part of every block: the reads are system calls,
# which two processes make on two cores at once (a C loop over 50,000 PNGs: 0.19 s
# in one process, 0.11 s in two).
READ_PROCESSES = min(2, usable_cores())


class ChildReads:
    """Files under ``folder``, read by ``processes`` child processes, each a contiguous
    part of every request; the answers wait here until taken: a few blocks' images,
    as the rows are read only so far ahead of the writing (source.READ_AHEAD)."""

    def __init__(self, folder: str, processes: int) -> None:
        self._answers: dict[tuple[int, int], Files] = {}
        self._failure: ImageReadError | None = None
        self._arrived = threading.Condition()
        self._children: list[_Child] = []
        try:
            for _ in range(processes):
                self._children.append(_Child(folder, self._arrive, self._fail))
        except BaseException:
            self.close()
            raise

    def request(self, tag: int, names: list[str]) -> None:
        parts = np.array_split(np.arange(len(names)), len(self._children))
        for child, part in zip(self._children, parts, strict=True):
            child.request(tag, names[part[0] : part[-1] + 1] if len(part) else [])

    def result(self, tag: int) -> Files:
        keys = [(tag, part) for part in range(len(self._children))]
        with self._arrived:
            while any(key not in self._answers for key in keys) and self._failure is None:
                self._arrived.wait()
            if self._failure is not None:
                raise self._failure
            return Files.joined([self._answers.pop(key) for key in keys])

    def _arrive(self, child: _Child, tag: int, files: Files) -> None:
        with self._arrived:
            self._answers[(tag, self._children.index(child))] = files
            self._arrived.notify_all()

    def _fail(self, error: ImageReadError) -> None:
        with self._arrived:
            self._failure = self._failure or error
            self._arrived.notify_all()

    def close(self) -> None:
        for child in self._children:
            child.close()


class _Child:
    """One reading process. One thread writes its requests and another reads its
    answers, so that neither end of a pipe waits on the other."""

    def __init__(
        self,
        folder: str,
        arrive: Callable[[_Child, int, Files], None],
        fail: Callable[[ImageReadError], None],
    ) -> None:
        self._command = [sys.executable, "-I", "-S", str(_CHILD), folder]
        self._process: subprocess.Popen[bytes] | None = None
        self._started = threading.Event()
        self._arrive = arrive
        self._fail = fail
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._write_requests, name="export-image-requests"),
            threading.Thread(target=self._read_answers, name="export-image-answers"),
        ]
        for thread in self._threads:
            thread.start()

    def _start(self) -> subprocess.Popen[bytes] | None:
        """The process, started on the requests' thread: its fork and exec (8 ms) do not
        hold up the export's own thread, whose first request waits here meanwhile."""
        try:
            self._process = subprocess.Popen(
                self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            _widen(self._process.stdout)
        except OSError as error:
            self._fail(ImageReadError(f"the image reader could not start: {error}"))
        finally:
            self._started.set()
        return self._process

    def request(self, tag: int, names: list[str]) -> None:
        # Names come from PostgreSQL's text, which holds no NUL byte.
        text = "".join(f"{name}\0" for name in names).encode()
        self._requests.put(read_files.REQUEST.pack(tag, len(names), len(text)) + text)

    def _write_requests(self) -> None:
        if (process := self._start()) is None:
            return
        requests = process.stdin
        assert requests is not None
        try:
            while (request := self._requests.get()) is not None:
                requests.write(request)
                requests.flush()
        except OSError:
            pass  # the child has ended: the answers' thread says why
        finally:
            _close_quietly(requests)

    def _read_answers(self) -> None:
        self._started.wait()
        if self._process is None:
            return
        try:
            while True:
                self._arrive(self, *self._answer())
        except ImageReadError as error:  # a file, or the child's end (closed, or crashed)
            self._fail(error)

    def _answer(self) -> tuple[int, Files]:
        tag, count = read_files.ANSWER.unpack(self._read(read_files.ANSWER.size))
        if count == read_files.ERROR:
            (length,) = read_files.LENGTH.unpack(self._read(read_files.LENGTH.size))
            message = self._read(length).decode(errors="replace")
            raise ImageReadError(f"an example's stored image cannot be read: {message}")
        sizes = np.frombuffer(self._read(8 * count), "<u8").astype(np.uint64)
        crcs = np.frombuffer(self._read(4 * count), "<u4").astype(np.uint32)
        return tag, Files(sizes, crcs, self._read(int(sizes.sum())))

    def _read(self, size: int) -> bytes:
        assert self._process is not None
        answers = self._process.stdout
        assert answers is not None
        data = answers.read(size)  # a buffered read: all ``size`` bytes, or the end
        if len(data) < size:
            raise self._stopped()
        return data

    def _stopped(self) -> ImageReadError:
        assert self._process is not None
        self._process.wait()
        assert self._process.stderr is not None
        error = self._process.stderr.read().decode(errors="replace").strip()
        status = self._process.returncode
        return ImageReadError(f"the image reader stopped (exit status {status}): {error}")

    def close(self) -> None:
        """Ends the child at once, whatever it was doing (a download cut off leaves
        answers nobody reads), then the two threads."""
        self._started.wait()
        if self._process is not None:
            self._process.kill()
        self._requests.put(None)
        for thread in self._threads:
            thread.join()
        if self._process is not None:
            self._process.wait()
            for stream in (self._process.stdout, self._process.stderr):
                _close_quietly(stream)


# The answers' pipe holds a block's images (1 MB for 4,096 MNIST PNGs) rather than
# Linux's default 64 KB, so that the child writes an answer in one go.
_PIPE_BYTES = 1 << 20


def _widen(pipe: IO[bytes] | None) -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if pipe is not None and set_size is not None:
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size
            fcntl.fcntl(pipe.fileno(), set_size, _PIPE_BYTES)


# A stored name that could lead out of the storage's folder: absolute, or with "..".
_LEAVING = r"^[/\\]|(^|[/\\])\.\.([/\\]|$)"


def check_inside_folder(names: pa.ChunkedArray) -> None:
    """The stored names, checked all at once as the storage would check each (the child
    processes open them under its folder themselves); an error names the first that
    leaves the folder."""
    leaving = pc.match_substring_regex(names, _LEAVING)
    if pc.any(leaving).as_py():
        name = names.filter(leaving)[0].as_py()
        raise ValueError(f"stored image name {name!r} leaves the media folder")


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        # A pipe whose other end is gone: nothing was left to flush.
        with contextlib.suppress(OSError):
            stream.close()


class StorageReads:
    """Images read through a storage (object storage, say), when their result is taken."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._requests: dict[int, list[str]] = {}
        self._lock = threading.Lock()

    def request(self, tag: int, names: list[str]) -> None:
        with self._lock:
            self._requests[tag] = names

    def result(self, tag: int) -> Files:
        with self._lock:
            names = self._requests.pop(tag)
        return Files.of([self._read(name) for name in names])

    def _read(self, name: str) -> bytes:
        with self._storage.open(name, "rb") as image:
            return bytes(image.read())

    def close(self) -> None:
        self._requests.clear()
