"""Read an ImageFolder (``class_name/*.png|jpg``, a folder or a zip) into a uint8 array.

Classes are the class folders' names, sorted as torchvision's ``ImageFolder`` sorts
them; images within a class come in the order of their sorted paths, so an index means
the same image as in torchvision. Memory stays bounded whatever the size of the set:
the first pass reads only each file's header (size and mode), the second decodes one
image at a time and writes it straight to the output ``.npy`` file; nothing holds the
archive or all the decoded images.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

# torchvision's IMG_EXTENSIONS, those Pillow reads.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
MAX_SIDE = 256
# What --resize may shrink from: beyond it a file is a decompression bomb, not a photo.
MAX_SOURCE_PIXELS = 8192 * 8192
# The same sentences reach the Register a dataset page and the import_dataset command, so
# they name both ways of resizing rather than only the command's option.
RESIZE_HINT = "the page's Resize field, or import_dataset --resize"
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
_IGNORED_FOLDERS = frozenset({"__MACOSX"})


class ImageFolderError(ValueError):
    """The folder or zip cannot be imported; the message says why and names the file."""


@dataclass(frozen=True)
class Limits:
    max_images: int
    max_file_bytes: int  # one image file, as stored (a zip entry: unpacked)
    max_array_bytes: int  # the decoded split, N x C x S x S


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the ImageFolder's root: "class/…/file.png"
    label: int


@dataclass(frozen=True)
class FolderPlan:
    classes: tuple[str, ...]
    entries: tuple[Entry, ...]
    channels: int
    size: int  # the stored side: the images' own, or the resize asked for
    source_size: tuple[int, int] | None  # (width, height) shared by every file; None: mixed

    @property
    def class_counts(self) -> list[int]:
        counts = [0] * len(self.classes)
        for entry in self.entries:
            counts[entry.label] += 1
        return counts

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.entries), self.channels, self.size, self.size)


class Source(Protocol):
    name: str
    kind: str

    def files(self) -> list[tuple[str, int]]:
        """Every file as (relative path, bytes); folders end with "/" and have 0 bytes."""
        ...

    def open(self, path: str) -> BinaryIO: ...


class FolderSource:
    kind = "folder"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = root.name

    def files(self) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for directory, folders, names in os.walk(self.root):
            relative = PurePosixPath(Path(directory).relative_to(self.root).as_posix())
            for folder in folders:
                found.append((f"{relative / folder}/".removeprefix("./"), 0))
            for name in names:
                path = Path(directory) / name
                if path.is_file():
                    found.append((str(relative / name).removeprefix("./"), path.stat().st_size))
        return found

    def open(self, path: str) -> BinaryIO:
        return (self.root / path).open("rb")


class ZipSource:
    kind = "zip"

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self.archive = archive
        self.name = name

    def files(self) -> list[tuple[str, int]]:
        return [
            (info.filename, 0 if info.is_dir() else info.file_size)
            for info in self.archive.infolist()
        ]

    def open(self, path: str) -> BinaryIO:
        return self.archive.open(path)  # type: ignore[return-value]


@contextmanager
def open_zip(file: Path | BinaryIO, name: str) -> Iterator[ZipSource]:
    try:
        with zipfile.ZipFile(file) as archive:
            yield ZipSource(archive, name)
    # NotImplementedError: a central directory that names a zip version zipfile cannot read
    # (a member's own unreadable stream is caught where it is read, UNREADABLE_MEMBER).
    except (zipfile.BadZipFile, NotImplementedError) as error:
        raise ImageFolderError(f"{name} is not a zip file ({error})") from error


def plan_image_folder(source: Source, limits: Limits, resize: int | None = None) -> FolderPlan:
    """Find the classes and images and read each image's header; refuse what cannot be
    imported with a sentence that names the file."""
    if resize is not None and not 1 <= resize <= MAX_SIDE:
        raise ImageFolderError(f"the resize must be a side from 1 to {MAX_SIDE}; {resize} is not")
    classes, entries = _layout(source, limits)
    headers = [_header(source, entry.path) for entry in entries]
    channels = 3 if any(mode not in _GREY_MODES for _, mode in headers) else 1
    sizes = {size for size, _ in headers}
    if resize is None:
        size = _common_side(entries, headers)
    else:
        for entry, ((width, height), _) in zip(entries, headers, strict=True):
            if width * height > MAX_SOURCE_PIXELS:
                raise ImageFolderError(
                    f"{entry.path} is {width}x{height}; images may have at most "
                    f"{MAX_SOURCE_PIXELS:,} pixels before resizing"
                )
        size = resize
    plan = FolderPlan(
        classes, tuple(entries), channels, size, next(iter(sizes)) if len(sizes) == 1 else None
    )
    array_bytes = int(np.prod(plan.shape))
    if array_bytes > limits.max_array_bytes:
        raise ImageFolderError(
            f"the {len(entries):,} images decode to {array_bytes:,} bytes; a split may hold at "
            f"most {limits.max_array_bytes:,}: resize them smaller ({RESIZE_HINT}), or give "
            "fewer images"
        )
    return plan


def _layout(source: Source, limits: Limits) -> tuple[tuple[str, ...], list[Entry]]:
    """The sorted class folders and each image with its label, in torchvision's order."""
    listed = [
        (PurePosixPath(path).parts, size, path.endswith("/"))
        for path, size in source.files()
        if not any(
            part.startswith(".") or part in _IGNORED_FOLDERS for part in PurePosixPath(path).parts
        )
    ]
    images = [
        (parts, size) for parts, size, folder in listed if not folder and _is_image(parts[-1])
    ]
    root = _common_root([parts for parts, _ in images])
    folders: set[str] = set()
    per_class: dict[str, list[tuple[str, int]]] = {}
    for parts, _size, folder in listed:
        inner = parts[len(root) :] if parts[: len(root)] == root else ()
        if len(inner) >= 2 or (folder and len(inner) == 1):
            folders.add(inner[0])
    for parts, size in images:
        inner = parts[len(root) :]
        if len(inner) >= 2:
            per_class.setdefault(inner[0], []).append(("/".join(parts), size))
    if not folders:
        raise ImageFolderError(
            f"{source.name} has no class folders: an ImageFolder holds one folder per class, "
            "each with its images (cat/1.png, dog/2.jpg, …)"
        )
    classes = tuple(sorted(folders))
    empty = [name for name in classes if name not in per_class]
    if empty:
        raise ImageFolderError(
            f"class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} hold"
            f"{'' if len(empty) > 1 else 's'} no images (.png, .jpg, …)"
        )
    count = sum(len(files) for files in per_class.values())
    if count > limits.max_images:
        raise ImageFolderError(
            f"{source.name} holds {count:,} images; an import holds at most {limits.max_images:,}"
        )
    entries: list[Entry] = []
    for label, name in enumerate(classes):
        for path, size in sorted(per_class[name]):
            if size > limits.max_file_bytes:
                raise ImageFolderError(
                    f"{path} has {size:,} bytes; an image file may have at most "
                    f"{limits.max_file_bytes:,}"
                )
            entries.append(Entry(path, label))
    return classes, entries


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _common_root(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The folders every image sits under above the class folders (a zip of ``data/``
    holds ``data/cat/1.png``): stripped while each image stays at least two deep."""
    root: tuple[str, ...] = ()
    while paths and all(len(parts) >= len(root) + 3 for parts in paths):
        first = {parts[len(root)] for parts in paths}
        if len(first) != 1:
            break
        root = (*root, first.pop())
    return root


# What zipfile raises for a member it cannot give back: encrypted (RuntimeError), an
# unsupported compression method (NotImplementedError), a corrupt stream (zlib, lzma, EOF).
UNREADABLE_MEMBER = (RuntimeError, NotImplementedError, zlib.error, lzma.LZMAError, EOFError)


def _header(source: Source, path: str) -> tuple[tuple[int, int], str]:
    """(width, height) and mode, from the header only."""
    try:
        with source.open(path) as handle, Image.open(handle) as image:
            return image.size, image.mode
    except UNREADABLE_MEMBER as error:
        raise ImageFolderError(f"{path} cannot be read from the zip ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageFolderError(f"{path} is not an image Pillow can read ({error})") from error


def _common_side(entries: list[Entry], headers: list[tuple[tuple[int, int], str]]) -> int:
    first_size = headers[0][0]
    for entry, (size, _) in zip(entries, headers, strict=True):
        if size != first_size:
            raise ImageFolderError(
                f"images differ in size: {entries[0].path} is {_wxh(first_size)} but "
                f"{entry.path} is {_wxh(size)}; all must have one size, or be resized to one "
                f"({RESIZE_HINT})"
            )
    width, height = first_size
    if width != height:
        raise ImageFolderError(
            f"images must be square; {entries[0].path} is {_wxh(first_size)}: resize them to a "
            f"square ({RESIZE_HINT})"
        )
    if width > MAX_SIDE:
        raise ImageFolderError(
            f"{entries[0].path} is {_wxh(first_size)}; images may be at most "
            f"{MAX_SIDE}x{MAX_SIDE}: resize them ({RESIZE_HINT})"
        )
    return width


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def write_images(
    source: Source,
    plan: FolderPlan,
    out: BinaryIO,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, str]:
    """Decode the images one at a time into ``out`` as a uint8 (N, C, S, S) ``.npy``.

    Returns the labels and the SHA-256 of the files' ``sha256sum`` listing (each file's
    hash and path, in index order): a folder's checksum over what was read.
    """
    header = {"descr": "|u1", "fortran_order": False, "shape": plan.shape}
    np.lib.format.write_array_header_1_0(out, header)
    listing = hashlib.sha256()
    mode = "RGB" if plan.channels == 3 else "L"
    every = max(1, len(plan.entries) // 100)
    for index, entry in enumerate(plan.entries):
        data = _read(source, entry.path)
        listing.update(f"{hashlib.sha256(data).hexdigest()}  {entry.path}\n".encode())
        out.write(_decode(entry.path, data, mode, plan.size).tobytes())
        if progress is not None and index % every == 0:
            progress(index / len(plan.entries))
    labels = np.fromiter((entry.label for entry in plan.entries), np.int64, len(plan.entries))
    return labels, listing.hexdigest()


def _read(source: Source, path: str) -> bytes:
    try:
        with source.open(path) as handle:
            return handle.read()
    except UNREADABLE_MEMBER as error:
        raise ImageFolderError(f"{path} cannot be read from the zip ({error})") from error


def _decode(path: str, data: bytes, mode: str, size: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != (size, size):
                image.draft(mode, (size, size))  # a JPEG decodes smaller, faster
            converted = image.convert(mode)
        if converted.size != (size, size):
            converted = converted.resize((size, size), Image.Resampling.LANCZOS)
        pixels = np.asarray(converted, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageFolderError(f"{path} could not be decoded ({error})") from error
    return pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels[np.newaxis]
