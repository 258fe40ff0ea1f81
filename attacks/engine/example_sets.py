"""External example sets (an ``.npz``, or PNGs plus a CSV): read strictly, store as 8-bit.

Accepted forms, everything else refused with the reason:

- ``.npz`` (``numpy.savez``; pickled object arrays are never loaded) with exactly
  these arrays: ``images``; ``source_indices`` and/or ``source_labels`` (N,);
  optionally ``target_labels`` (N,), -1 meaning none. Labels and indices have an
  integer dtype.
- ``images`` is ``uint8`` (0-255) or floating point: on the 0-1 scale or the 0-255
  scale, inferred from the maximum (above 1 means 0-255) unless given; finite,
  inside that range. Shape (N, C, S, S) or (N, S, S, C) with the dataset's C and
  S, or (N, S, S) for one-channel datasets. Flattened images are refused: their
  layout cannot be known.
- A folder (or a ``.zip`` of one) of 8-bit PNGs (mode L, or RGB for colour
  datasets) plus exactly one CSV with a header ``file_name`` and
  ``source_index`` and/or ``source_label`` (and optionally ``target_label``,
  empty or -1 meaning none). Every PNG of the folder must be listed: a
  truncated CSV would otherwise import a silent subset.

Float images are rounded to the nearest 8-bit level. An exact half level (as
in Tramèr et al.'s eps=0.3 set, whose perturbations are +-76.5/255) is a tie;
it goes toward the clean image when that is known, so that rounding never
moves an image out of a ball it was in (docs/architecture.md, rule 1), else to the even level.

Memory stays bounded whatever a small upload unpacks to: an ``.npz`` member's shape and
dtype are read from its ``.npy`` header and checked against ``MAX_EXAMPLES`` and
``MAX_NPZ_BYTES`` before any array is allocated, a zip's directory is sized before it is
read, and the CSV is streamed with a cap on its bytes and rows.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch
from PIL import Image

ARRAY_NAMES = ("images", "source_indices", "source_labels", "target_labels")
CSV_COLUMNS = ("file_name", "source_index", "source_label", "target_label")
NO_TARGET = -1
NORMS = ("linf", "l2", "l0")
# Float noise allowed around a level or a half level (0-255 scale): float32 of a
# 0-1 value times 255 is off by about 1.5e-5.
_LEVEL_TOLERANCE = 1e-4
_CHUNK_IMAGES = 1024
# Unzipped size of an uploaded zip we are willing to read (zip bombs).
MAX_UNZIPPED_BYTES = 1 << 30
# Limits that keep an import's memory bounded however well its file compresses.
MAX_EXAMPLES = 100_000
MAX_NPZ_BYTES = 48 << 20  # the arrays of an .npz, unpacked
MAX_CSV_BYTES = 16 << 20
MAX_PNG_BYTES = 1 << 20  # one image of at most 32x32 pixels is a few kB
# A zip's directory is read whole, about 600 bytes of memory per entry.
MAX_ZIP_ENTRIES = MAX_EXAMPLES + 1000
MAX_ZIP_DIRECTORY_BYTES = 32 << 20
_NPY_MAGIC = b"\x93NUMPY"


class ExampleSetError(ValueError):
    """An example set that cannot be imported; the message says why."""


@dataclass(frozen=True)
class ExampleSet:
    """What a file holds, checked for form but not yet against a dataset."""

    pixels: np.ndarray  # (N, C, S, S): uint8, or float64 on the 0-255 scale
    image_form: str  # how the images were given, for the provenance record
    source_indices: np.ndarray | None  # int64 (N,)
    source_labels: np.ndarray | None  # int64 (N,)
    target_labels: np.ndarray | None  # int64 (N,), NO_TARGET where none

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class Budget:
    """The perturbation size a set claims to respect: eps on the 0-1 scale, pixels for L0."""

    norm: str
    eps: float

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ExampleSetError(f"unknown norm {self.norm!r}; known: {', '.join(NORMS)}")
        if not (np.isfinite(self.eps) and self.eps > 0):
            raise ExampleSetError(f"eps must be a positive number, got {self.eps}")


# --- .npz ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NpyHeader:
    """What a member's .npy header promises, read before its array is allocated."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def read_npz(
    file: IO[bytes] | Path, channels: int, size: int, pixel_scale: int | None = None
) -> ExampleSet:
    arrays = _load_npz(file, channels, size)
    pixels, form = _pixels(arrays.pop("images"), channels, size, pixel_scale)
    return _with_labels(
        pixels,
        form,
        {name: _label_array(arrays, name) for name in ARRAY_NAMES[1:]},
    )


def _load_npz(file: IO[bytes] | Path, channels: int, size: int) -> dict[str, np.ndarray]:
    """The arrays, each read only after every header has passed the checks."""
    with _binary(file) as stream:
        if stream.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
            raise ExampleSetError("expected an .npz archive (numpy.savez), got a single array")
        with _open_zip(stream, ".npz archive") as archive:
            members = _npz_members(archive)
            headers = {name: _npy_header(archive, info) for name, info in members.items()}
            _check_npz_headers(headers, channels, size)
            return {name: _npy_array(archive, info) for name, info in members.items()}


def _binary(file: IO[bytes] | Path) -> AbstractContextManager[IO[bytes]]:
    return file.open("rb") if isinstance(file, Path) else nullcontext(file)


@contextmanager
def _open_zip(stream: IO[bytes], what: str) -> Iterator[zipfile.ZipFile]:
    entries, directory_bytes = _zip_directory_size(stream)
    if entries > MAX_ZIP_ENTRIES or directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise ExampleSetError(
            f"the {what} may hold at most {MAX_ZIP_ENTRIES} files in a directory of at most "
            f"{MAX_ZIP_DIRECTORY_BYTES} bytes; this one holds {entries} in {directory_bytes}"
        )
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise ExampleSetError(f"not a readable {what}: {error}") from error
    with archive:
        yield archive


def _zip_directory_size(stream: IO[bytes]) -> tuple[int, int]:
    """Entries and bytes of the central directory, from the end record (0, 0 if none)."""
    end = stream.seek(0, io.SEEK_END)
    start = stream.seek(max(0, end - 22 - 0xFFFF))  # the record, then a comment of <64 kB
    tail = stream.read(end - start)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        stream.seek(0)
        return 0, 0  # not a zip: ZipFile says so
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    directory_bytes = int.from_bytes(tail[at + 12 : at + 16], "little")
    locator = tail[at - 20 : at] if at >= 20 else b""
    if (entries == 0xFFFF or directory_bytes == 0xFFFFFFFF) and locator[:4] == b"PK\x06\x07":
        stream.seek(int.from_bytes(locator[8:16], "little"))
        record = stream.read(56)  # the ZIP64 end record
        if record[:4] == b"PK\x06\x06" and len(record) == 56:
            entries = int.from_bytes(record[32:40], "little")
            directory_bytes = int.from_bytes(record[40:48], "little")
    stream.seek(0)
    return entries, directory_bytes


def _npz_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    names = [info.filename.removesuffix(".npy") for info in archive.infolist()]
    unknown = sorted(set(names) - set(ARRAY_NAMES))
    if unknown:
        raise ExampleSetError(
            f"unknown arrays {', '.join(unknown)}; an .npz holds only {', '.join(ARRAY_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ExampleSetError("the .npz holds an array twice")
    if "images" not in names:
        raise ExampleSetError("the .npz has no array 'images'")
    return dict(zip(names, archive.infolist(), strict=True))


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> _NpyHeader:
    name = info.filename.removesuffix(".npy")
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ExampleSetError(f"{name}: .npy format {version} is not supported")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        if isinstance(error, ExampleSetError):
            raise
        raise ExampleSetError(f"{name} is not a readable .npy array: {error}") from error
    if dtype.hasobject:  # never unpickled: an uploaded file could run code
        raise ExampleSetError(f"{name} holds Python objects; give numbers")
    header = _NpyHeader(tuple(shape), dtype)
    if header.nbytes > info.file_size:
        raise ExampleSetError(f"{name} is truncated: its header promises more than it holds")
    return header


def _check_npz_headers(headers: Mapping[str, _NpyHeader], channels: int, size: int) -> None:
    images = headers["images"]
    _layout(images.shape, channels, size)
    count = images.shape[0]
    if count == 0:
        raise ExampleSetError("the set has no images")
    if count > MAX_EXAMPLES:
        raise ExampleSetError(
            f"the set holds {count} images; an import holds at most {MAX_EXAMPLES}"
        )
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ExampleSetError(f"images must be uint8 or floating point, got {images.dtype}")
    for name in ARRAY_NAMES[1:]:
        if name in headers:
            _check_labels(name, headers[name], count)
    unpacked = sum(header.nbytes for header in headers.values())
    if unpacked > MAX_NPZ_BYTES:
        raise ExampleSetError(
            f"the arrays unpack to {unpacked} bytes; an .npz may unpack to at most "
            f"{MAX_NPZ_BYTES} ({MAX_NPZ_BYTES >> 20} MiB); split the set"
            + ("" if images.dtype == np.uint8 else ", or store the images as uint8")
        )


def _check_labels(name: str, header: _NpyHeader, count: int) -> None:
    if len(header.shape) != 1 or not np.issubdtype(header.dtype, np.integer):
        raise ExampleSetError(
            f"{name} must be a 1-D integer array, got shape {header.shape} of {header.dtype}"
        )
    if header.shape[0] != count:
        raise ExampleSetError(f"{name} has {header.shape[0]} entries for {count} images")


def _npy_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    try:
        with archive.open(info) as member:
            array: np.ndarray = np.lib.format.read_array(member, allow_pickle=False)
            return array
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        name = info.filename.removesuffix(".npy")
        raise ExampleSetError(f"{name} is not a readable .npy array: {error}") from error


def _label_array(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray | None:
    return arrays[name].astype(np.int64) if name in arrays else None


def _with_labels(
    pixels: np.ndarray, form: str, labels: Mapping[str, np.ndarray | None]
) -> ExampleSet:
    if labels["source_indices"] is None and labels["source_labels"] is None:
        raise ExampleSetError("give source_indices, or source_labels when the sources are unknown")
    return ExampleSet(pixels, form, **labels)


def _pixels(
    images: np.ndarray, channels: int, size: int, pixel_scale: int | None
) -> tuple[np.ndarray, str]:
    """(N, C, S, S) uint8, or float64 on the 0-255 scale, and a description of the input.

    The header checks have passed: the shape fits the dataset and the dtype is allowed.
    """
    layout = _layout(images.shape, channels, size)
    if images.dtype == np.uint8:
        return _channels_first(images, layout), f"uint8 {layout}"
    values, scale = _float_levels(images, pixel_scale)
    return _channels_first(values, layout), f"{images.dtype} on the 0-{scale} scale {layout}"


def _layout(shape: tuple[int, ...], channels: int, size: int) -> str:
    layouts: dict[str, tuple[int, ...]] = {
        "(N, C, H, W)": (channels, size, size),
        "(N, H, W, C)": (size, size, channels),
    }
    if channels == 1:
        layouts["(N, H, W)"] = (size, size)
    for name, tail in layouts.items():
        if len(shape) == len(tail) + 1 and tuple(shape[1:]) == tail:
            return name
    wanted = " or ".join(f"(N, {', '.join(map(str, tail))})" for tail in layouts.values())
    raise ExampleSetError(f"images have shape {tuple(shape)}; this dataset needs {wanted}")


def _channels_first(values: np.ndarray, layout: str) -> np.ndarray:
    if layout == "(N, H, W)":
        return values[:, None]
    if layout == "(N, H, W, C)":
        return np.ascontiguousarray(np.transpose(values, (0, 3, 1, 2)))
    return values


def _float_levels(images: np.ndarray, pixel_scale: int | None) -> tuple[np.ndarray, int]:
    bad = images.size - int(np.count_nonzero(np.isfinite(images)))
    if bad:
        raise ExampleSetError(f"images hold {bad} NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    scale = pixel_scale or (255 if high > 1.0 else 1)
    if scale not in (1, 255):
        raise ExampleSetError(f"the pixel scale is 1 or 255, got {scale}")
    if low < 0.0 or high > scale:
        raise ExampleSetError(
            f"float images on the 0-{scale} scale hold values from {low:g} to {high:g}"
        )
    values = images.astype(np.float64)
    values *= 255.0 / scale  # in place: one float64 copy of the images, not two
    return values, scale


# --- PNGs plus a CSV ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Folder:
    """The files of a folder, or of a zip's one folder: unpacked sizes, and how to open one."""

    where: str
    sizes: Mapping[str, int]
    open: Callable[[str], IO[bytes]]


def read_png_folder(folder: Path, channels: int, size: int) -> ExampleSet:
    files = {path.name: path for path in folder.iterdir() if path.is_file()}
    sizes = {name: path.stat().st_size for name, path in files.items()}
    return _read_png_table(
        _Folder(str(folder), sizes, lambda name: files[name].open("rb")), channels, size
    )


def read_png_zip(file: IO[bytes] | Path, channels: int, size: int) -> ExampleSet:
    with _binary(file) as stream, _open_zip(stream, ".zip archive") as archive:
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir() and not info.filename.startswith("__MACOSX/")
        ]
        if sum(info.file_size for info in members) > MAX_UNZIPPED_BYTES:
            raise ExampleSetError(f"the zip unpacks to more than {MAX_UNZIPPED_BYTES} bytes")
        folders = {str(PurePosixPath(info.filename).parent) for info in members}
        if len(folders) != 1:
            raise ExampleSetError("the zip must hold one folder of PNGs and a CSV, not subfolders")
        by_name = {PurePosixPath(info.filename).name: info for info in members}
        sizes = {name: info.file_size for name, info in by_name.items()}
        return _read_png_table(
            _Folder("the zip", sizes, lambda name: archive.open(by_name[name])), channels, size
        )


def _read_png_table(folder: _Folder, channels: int, size: int) -> ExampleSet:
    names = sorted(folder.sizes)
    tables = [name for name in names if name.lower().endswith(".csv")]
    if len(tables) != 1:
        raise ExampleSetError(
            f"{folder.where} must hold exactly one .csv file, found {len(tables)}"
        )
    rows = _read_csv(folder, tables[0])
    listed = [row["file_name"] for row in rows]
    unlisted = sorted(set(n for n in names if n.lower().endswith(".png")) - set(listed))
    if unlisted:
        shown = ", ".join(unlisted[:5]) + (", ..." if len(unlisted) > 5 else "")
        raise ExampleSetError(f"{len(unlisted)} PNG files are not listed in the CSV: {shown}")
    missing = sorted(set(listed) - set(names))
    if missing:
        raise ExampleSetError(f"the CSV lists files that are not there: {', '.join(missing[:5])}")
    mode = "L" if channels == 1 else "RGB"
    pixels = np.stack([_png_pixels(name, _read_png(folder, name), mode, size) for name in listed])
    labels = {
        "source_indices": _csv_column(rows, "source_index"),
        "source_labels": _csv_column(rows, "source_label"),
        "target_labels": _csv_column(rows, "target_label", empty=NO_TARGET),
    }
    return _with_labels(pixels, f"8-bit PNG, mode {mode}", labels)


@contextmanager
def _reading(name: str, where: str) -> Iterator[None]:
    """A file that fails while being read is refused with the reason, never a crash."""
    try:
        yield
    except (
        OSError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        NotImplementedError,
        RuntimeError,
    ) as error:
        # A bad CRC, an unknown compression method, an encrypted member, a file gone.
        raise ExampleSetError(f"{name} cannot be read from {where}: {error}") from error


def _read_png(folder: _Folder, name: str) -> bytes:
    if folder.sizes[name] > MAX_PNG_BYTES:
        raise ExampleSetError(
            f"{name} unpacks to {folder.sizes[name]} bytes; a PNG may have at most {MAX_PNG_BYTES}"
        )
    with _reading(name, folder.where), folder.open(name) as stream:
        payload = stream.read(MAX_PNG_BYTES + 1)
    if len(payload) > MAX_PNG_BYTES:
        raise ExampleSetError(f"{name} has more than {MAX_PNG_BYTES} bytes")
    return payload


def _read_csv(folder: _Folder, name: str) -> list[dict[str, str]]:
    if folder.sizes[name] > MAX_CSV_BYTES:
        raise ExampleSetError(
            f"the CSV unpacks to {folder.sizes[name]} bytes; it may have at most "
            f"{MAX_CSV_BYTES} ({MAX_CSV_BYTES >> 20} MiB)"
        )
    with _reading(name, folder.where), folder.open(name) as stream:
        capped = io.BufferedReader(_CappedReader(stream, MAX_CSV_BYTES))
        return _csv_rows(io.TextIOWrapper(capped, encoding="utf-8-sig", newline=""))


class _CappedReader(io.RawIOBase):
    """A stream that refuses to yield more than ``limit`` bytes (a CSV is read as it streams)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream, self._left = stream, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(min(len(buffer), self._left + 1))
        if len(data) > self._left:
            raise ExampleSetError(f"the CSV has more than {MAX_CSV_BYTES} bytes")
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _csv_rows(text: IO[str]) -> list[dict[str, str]]:
    try:
        lines = csv.reader(text)
        header = [name.strip() for name in next(lines, [])]
        _check_csv_header(header)
        rows = _csv_records(lines, header)
    except UnicodeDecodeError as error:
        raise ExampleSetError(f"the CSV is not UTF-8: {error}") from error
    except csv.Error as error:
        raise ExampleSetError(f"the CSV cannot be parsed: {error}") from error
    if not rows:
        raise ExampleSetError("the CSV lists no images")
    names = [row["file_name"] for row in rows]
    if len(set(names)) != len(names):
        raise ExampleSetError("the CSV lists a file more than once")
    return rows


def _check_csv_header(header: list[str]) -> None:
    unknown = sorted(set(header) - set(CSV_COLUMNS))
    if "file_name" not in header or unknown or len(set(header)) != len(header):
        raise ExampleSetError(
            f"the CSV header must be file_name, source_index and/or source_label, and "
            f"optionally target_label; got {', '.join(header) or 'nothing'}"
        )


def _csv_records(lines: Iterator[list[str]], header: list[str]) -> list[dict[str, str]]:
    rows = []
    for number, cells in enumerate(lines, start=2):
        if number > MAX_EXAMPLES + 1:  # blank lines count: each costs a turn of this loop
            raise ExampleSetError(
                f"the CSV has more than {MAX_EXAMPLES} lines after its header; an import holds "
                f"at most {MAX_EXAMPLES} examples"
            )
        if not cells:
            continue  # a blank line, often the last one
        if len(cells) != len(header):
            raise ExampleSetError(f"CSV line {number} has {len(cells)} cells, not {len(header)}")
        rows.append(dict(zip(header, (cell.strip() for cell in cells), strict=True)))
    return rows


def _csv_column(
    rows: list[dict[str, str]], column: str, empty: int | None = None
) -> np.ndarray | None:
    if column not in rows[0]:
        return None
    values = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        cell = row[column]
        if not cell and empty is not None:
            values.append(empty)
            continue
        try:
            values.append(int(cell))
        except ValueError:
            raise ExampleSetError(
                f"CSV line {number}: {column} {cell!r} is not an integer"
            ) from None
    return np.asarray(values, dtype=np.int64)


def _png_pixels(name: str, payload: bytes, mode: str, size: int) -> np.ndarray:
    if PurePosixPath(name).name != name or not name.lower().endswith(".png"):
        raise ExampleSetError(f"{name!r}: the CSV lists PNG file names in the same folder only")
    try:
        image = Image.open(io.BytesIO(payload), formats=["PNG"])
        if image.mode != mode:
            raise ExampleSetError(f"{name} is a mode {image.mode} PNG; this dataset needs {mode}")
        if image.size != (size, size):
            raise ExampleSetError(f"{name} is {image.size[0]}x{image.size[1]}, not {size}x{size}")
        array = np.asarray(image)
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:  # PIL's refusals
        raise ExampleSetError(f"{name} is not a readable PNG: {error}") from error
    return array[None] if array.ndim == 2 else np.transpose(array, (2, 0, 1))


# --- 8-bit images and the budget check ----------------------------------------------------


def _chunks(count: int) -> Iterator[slice]:
    """Slices of images small enough that float64 temporaries of one stay a few MB."""
    for start in range(0, count, _CHUNK_IMAGES):
        yield slice(start, min(start + _CHUNK_IMAGES, count))


def to_uint8(pixels: np.ndarray, clean_uint8: torch.Tensor | None) -> torch.Tensor:
    """The 8-bit images to store: nearest level, ties toward the clean image (see above)."""
    if pixels.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(pixels))
    stored = np.empty(pixels.shape, dtype=np.uint8)
    for part in _chunks(len(pixels)):
        clean = None if clean_uint8 is None else clean_uint8[part].numpy()
        stored[part] = _rounded(pixels[part], clean)
    return torch.from_numpy(stored)


def _rounded(pixels: np.ndarray, clean_uint8: np.ndarray | None) -> np.ndarray:
    if clean_uint8 is None:
        return np.rint(pixels).astype(np.uint8)
    clean = clean_uint8.astype(np.float64)
    delta = pixels - clean
    # floor(|d| + 0.5 - tol): 76.6 -> 77, 76.5 -> 76, 76.4 -> 76, 51.00001 -> 51.
    size = np.floor(np.abs(delta) + 0.5 - _LEVEL_TOLERANCE).clip(min=0)
    stored = clean + np.sign(delta) * size
    return stored.clip(0, 255).astype(np.uint8)


def rounding_summary(pixels: np.ndarray) -> dict[str, Any]:
    """How far from the 8-bit grid float input was: what rounding had to decide."""
    summary = {"off_grid_values": 0, "half_level_ties": 0}
    if pixels.dtype == np.uint8:
        return summary
    for part in _chunks(len(pixels)):
        values = pixels[part]
        fraction = np.abs(values - np.floor(values) - 0.5)
        off_grid = np.abs(values - np.rint(values)) > _LEVEL_TOLERANCE
        summary["off_grid_values"] += int(off_grid.sum())
        summary["half_level_ties"] += int((fraction <= _LEVEL_TOLERANCE).sum())
    return summary


def check_budget(
    clean_uint8: torch.Tensor, stored_uint8: torch.Tensor, budget: Budget
) -> dict[str, Any]:
    """How many stored images lie outside the claimed budget, and by how much.

    Sizes are measured on the 0-255 integer grid, so an overshoot of one level is
    exactly 1.0 and not 0.99999 of float noise.
    """
    limit = budget.eps if budget.norm == "l0" else budget.eps * 255.0
    sizes, outside = [], 0
    for part in _chunks(len(stored_uint8)):
        delta = (stored_uint8[part].to(torch.int16) - clean_uint8[part].to(torch.int16)).flatten(1)
        sizes.append(_perturbation_sizes(delta, budget.norm))
        if budget.norm == "linf":
            outside += int((delta.abs() > limit + 1e-6).sum())
    overshoot = torch.cat(sizes) - limit
    exceeding = overshoot > 1e-6
    report: dict[str, Any] = {
        "norm": budget.norm,
        "eps": budget.eps,
        "examples_exceeding": int(exceeding.sum()),
        "max_overshoot": round(max(float(overshoot.max()), 0.0), 6),
        "overshoot_unit": "values changed" if budget.norm == "l0" else "1/255",
    }
    if budget.norm == "linf":
        report["values_outside_ball"] = outside
    return report


def _perturbation_sizes(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per image, on the 0-255 grid: values changed (L0), largest change, or L2 length."""
    if norm == "l0":
        return (delta != 0).sum(dim=1).double()
    if norm == "linf":
        return delta.abs().amax(dim=1).double()
    return delta.double().norm(dim=1)
