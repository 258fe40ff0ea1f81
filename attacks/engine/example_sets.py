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
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Mapping
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
# Unzipped size of an uploaded zip we are willing to read (zip bombs).
MAX_UNZIPPED_BYTES = 1 << 30


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


def read_npz(
    file: IO[bytes] | Path, channels: int, size: int, pixel_scale: int | None = None
) -> ExampleSet:
    arrays = _load_npz(file)
    unknown = sorted(set(arrays) - set(ARRAY_NAMES))
    if unknown:
        raise ExampleSetError(
            f"unknown arrays {', '.join(unknown)}; an .npz holds only {', '.join(ARRAY_NAMES)}"
        )
    if "images" not in arrays:
        raise ExampleSetError("the .npz has no array 'images'")
    pixels, form = _pixels(arrays["images"], channels, size, pixel_scale)
    count = pixels.shape[0]
    return _with_labels(
        pixels,
        form,
        {name: _label_array(arrays, name, count) for name in ARRAY_NAMES[1:]},
    )


def _load_npz(file: IO[bytes] | Path) -> dict[str, np.ndarray]:
    try:
        # Never unpickle: an uploaded file could run code.
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ExampleSetError("expected an .npz archive (numpy.savez), got a single array")
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, ExampleSetError):
            raise
        raise ExampleSetError(f"not a readable .npz archive: {error}") from error


def _label_array(arrays: Mapping[str, np.ndarray], name: str, count: int) -> np.ndarray | None:
    if name not in arrays:
        return None
    array = arrays[name]
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ExampleSetError(
            f"{name} must be a 1-D integer array, got shape {array.shape} of {array.dtype}"
        )
    if array.shape[0] != count:
        raise ExampleSetError(f"{name} has {array.shape[0]} entries for {count} images")
    return array.astype(np.int64)


def _with_labels(
    pixels: np.ndarray, form: str, labels: Mapping[str, np.ndarray | None]
) -> ExampleSet:
    if labels["source_indices"] is None and labels["source_labels"] is None:
        raise ExampleSetError("give source_indices, or source_labels when the sources are unknown")
    return ExampleSet(pixels, form, **labels)


def _pixels(
    images: np.ndarray, channels: int, size: int, pixel_scale: int | None
) -> tuple[np.ndarray, str]:
    """(N, C, S, S) uint8, or float64 on the 0-255 scale, and a description of the input."""
    layout = _layout(images.shape, channels, size)
    if images.shape[0] == 0:
        raise ExampleSetError("the set has no images")
    if images.dtype == np.uint8:
        values: np.ndarray = images
        form = f"uint8 {layout}"
    elif np.issubdtype(images.dtype, np.floating):
        values, scale = _float_levels(images, pixel_scale)
        form = f"{images.dtype} on the 0-{scale} scale {layout}"
    else:
        raise ExampleSetError(f"images must be uint8 or floating point, got {images.dtype}")
    return _channels_first(values, layout), form


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
    values = images.astype(np.float64)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise ExampleSetError(f"images hold {bad} NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    scale = pixel_scale or (255 if high > 1.0 else 1)
    if scale not in (1, 255):
        raise ExampleSetError(f"the pixel scale is 1 or 255, got {scale}")
    if low < 0.0 or high > scale:
        raise ExampleSetError(
            f"float images on the 0-{scale} scale hold values from {low:g} to {high:g}"
        )
    return values * (255.0 / scale), scale


# --- PNGs plus a CSV ----------------------------------------------------------------------


def read_png_folder(folder: Path, channels: int, size: int) -> ExampleSet:
    files = {path.name: path for path in folder.iterdir() if path.is_file()}
    return _read_png_table(
        sorted(files), lambda name: files[name].read_bytes(), channels, size, where=str(folder)
    )


def read_png_zip(file: IO[bytes] | Path, channels: int, size: int) -> ExampleSet:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as error:
        raise ExampleSetError(f"not a readable .zip archive: {error}") from error
    with archive:
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

        def read(name: str) -> bytes:
            try:
                return archive.read(by_name[name])
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as error:
                # A bad CRC, an unknown compression method, an encrypted member.
                raise ExampleSetError(f"{name} cannot be read from the zip: {error}") from error

        return _read_png_table(sorted(by_name), read, channels, size, "the zip")


def _read_png_table(
    names: list[str], read: Callable[[str], bytes], channels: int, size: int, where: str
) -> ExampleSet:
    tables = [name for name in names if name.lower().endswith(".csv")]
    if len(tables) != 1:
        raise ExampleSetError(f"{where} must hold exactly one .csv file, found {len(tables)}")
    rows = _csv_rows(read(tables[0]))
    listed = [row["file_name"] for row in rows]
    unlisted = sorted(set(n for n in names if n.lower().endswith(".png")) - set(listed))
    if unlisted:
        shown = ", ".join(unlisted[:5]) + (", ..." if len(unlisted) > 5 else "")
        raise ExampleSetError(f"{len(unlisted)} PNG files are not listed in the CSV: {shown}")
    missing = sorted(set(listed) - set(names))
    if missing:
        raise ExampleSetError(f"the CSV lists files that are not there: {', '.join(missing[:5])}")
    mode = "L" if channels == 1 else "RGB"
    pixels = np.stack([_png_pixels(name, read(name), mode, size) for name in listed])
    labels = {
        "source_indices": _csv_column(rows, "source_index"),
        "source_labels": _csv_column(rows, "source_label"),
        "target_labels": _csv_column(rows, "target_label", empty=NO_TARGET),
    }
    return _with_labels(pixels, f"8-bit PNG, mode {mode}", labels)


def _csv_rows(payload: bytes) -> list[dict[str, str]]:
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ExampleSetError(f"the CSV is not UTF-8: {error}") from error
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise ExampleSetError(f"the CSV cannot be parsed: {error}") from error
    header = [name.strip() for name in lines[0]] if lines else []
    unknown = sorted(set(header) - set(CSV_COLUMNS))
    if "file_name" not in header or unknown or len(set(header)) != len(header):
        raise ExampleSetError(
            f"the CSV header must be file_name, source_index and/or source_label, and "
            f"optionally target_label; got {', '.join(header) or 'nothing'}"
        )
    rows = []
    for number, cells in enumerate(lines[1:], start=2):
        if not cells:
            continue  # a blank line, often the last one
        if len(cells) != len(header):
            raise ExampleSetError(f"CSV line {number} has {len(cells)} cells, not {len(header)}")
        rows.append(dict(zip(header, (cell.strip() for cell in cells), strict=True)))
    if not rows:
        raise ExampleSetError("the CSV lists no images")
    names = [row["file_name"] for row in rows]
    if len(set(names)) != len(names):
        raise ExampleSetError("the CSV lists a file more than once")
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


def to_uint8(pixels: np.ndarray, clean_uint8: torch.Tensor | None) -> torch.Tensor:
    """The 8-bit images to store: nearest level, ties toward the clean image (see above)."""
    if pixels.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(pixels))
    if clean_uint8 is None:
        return torch.from_numpy(np.rint(pixels).astype(np.uint8))
    clean = clean_uint8.numpy().astype(np.float64)
    delta = pixels - clean
    # floor(|d| + 0.5 - tol): 76.6 -> 77, 76.5 -> 76, 76.4 -> 76, 51.00001 -> 51.
    size = np.floor(np.abs(delta) + 0.5 - _LEVEL_TOLERANCE).clip(min=0)
    stored = clean + np.sign(delta) * size
    return torch.from_numpy(stored.clip(0, 255).astype(np.uint8))


def rounding_summary(pixels: np.ndarray) -> dict[str, Any]:
    """How far from the 8-bit grid float input was: what rounding had to decide."""
    if pixels.dtype == np.uint8:
        return {"off_grid_values": 0, "half_level_ties": 0}
    fraction = np.abs(pixels - np.floor(pixels) - 0.5)
    off_grid = np.abs(pixels - np.rint(pixels)) > _LEVEL_TOLERANCE
    return {
        "off_grid_values": int(off_grid.sum()),
        "half_level_ties": int((fraction <= _LEVEL_TOLERANCE).sum()),
    }


def check_budget(
    clean_uint8: torch.Tensor, stored_uint8: torch.Tensor, budget: Budget
) -> dict[str, Any]:
    """How many stored images lie outside the claimed budget, and by how much.

    Sizes are measured on the 0-255 integer grid, so an overshoot of one level is
    exactly 1.0 and not 0.99999 of float noise.
    """
    delta = (stored_uint8.to(torch.int64) - clean_uint8.to(torch.int64)).flatten(1)
    if budget.norm == "l0":
        sizes, limit, unit = (delta != 0).sum(dim=1).double(), budget.eps, "values changed"
    else:
        limit, unit = budget.eps * 255.0, "1/255"
        sizes = (
            delta.abs().amax(dim=1).double()
            if budget.norm == "linf"
            else delta.double().norm(dim=1)
        )
    overshoot = sizes - limit
    exceeding = overshoot > 1e-6
    report: dict[str, Any] = {
        "norm": budget.norm,
        "eps": budget.eps,
        "examples_exceeding": int(exceeding.sum()),
        "max_overshoot": round(max(float(overshoot.max()), 0.0), 6),
        "overshoot_unit": unit,
    }
    if budget.norm == "linf":
        report["values_outside_ball"] = int((delta.abs() > limit + 1e-6).sum())
    return report
