"""A Hugging Face ``imagefolder`` dataset as one zip, streamed (zipstream-ng, ZIP64).

    images/<id>.png    each image exactly as the annotators saw it (stored: PNGs do
                       not deflate again)
    metadata.parquet   one row per image: ``file_name`` and the examples table's columns
    README.md          the dataset card: provenance (see card.py)

``datasets.load_dataset("imagefolder", data_dir=<unzipped>)`` reads it as it is.
Each batch's images leave as soon as its rows are read; its metadata rows go into a
Parquet file that follows the last image; the card comes last, its counts from the
same snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow.parquet as pq
from django.core.files.storage import Storage
from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

from analysis.exports.card import dataset_card, provenance
from analysis.exports.tables import STORED_IMAGE, examples_table, predicting_models
from analysis.exports.writers import Sink
from analysis.reading import Snapshot
from attacks.models import Example
from study.models import Study


def imagefolder_bytes(
    study: Study, snapshot: Snapshot, include_excluded: bool, on_rows: Callable[[int], None]
) -> Iterator[bytes]:
    archive = ZipStream(compress_type=ZIP_STORED)
    table = examples_table(study, include_excluded=include_excluded, with_images=True)
    storage = Example._meta.get_field("image").storage
    metadata = Sink()
    with pq.ParquetWriter(metadata, table.schema, compression="zstd") as parquet:
        for batch in table.batches(snapshot):
            names = batch.column("file_name").to_pylist()
            stored = batch.column(STORED_IMAGE).to_pylist()
            for name, stored_name in zip(names, stored, strict=True):
                archive.add(_read(storage, stored_name), name)
            parquet.write_batch(batch.drop_columns([STORED_IMAGE]))
            yield from archive.all_files()
            on_rows(batch.num_rows)
    archive.add(metadata.drain(), "metadata.parquet")
    facts = provenance(
        study, snapshot, include_excluded=include_excluded, models=predicting_models(study)
    )
    archive.add(dataset_card(facts).encode(), "README.md", compress_type=ZIP_DEFLATED)
    yield from archive.finalize()


def _read(storage: Storage, name: str) -> bytes:
    # Storage.open refuses a name that leaves its folder (SuspiciousFileOperation).
    with storage.open(name, "rb") as image:
        return image.read()
