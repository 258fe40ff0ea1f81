"""A generation job's images in one file (attacks/image_packs.py): written once the job
has succeeded, read by example id and SHA-256 only where both are the example's own."""

from __future__ import annotations

import hashlib
import io
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command

from attacks import image_packs, services, tasks
from attacks.image_packs import ImagePack, PackError, write_pack
from attacks.models import Example, GenerationJob, JobStatus
from tests.fixtures import generate_clean

# ---- the file ----


@pytest.fixture
def images() -> dict[int, bytes]:
    rng = np.random.default_rng(1)
    sizes = [0, 1, 300, 5_000, 70_000, *rng.integers(1, 900, 20).tolist()]
    ids = np.sort(rng.choice(10_000, len(sizes), replace=False))
    return {
        int(example_id): rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        for example_id, size in zip(ids, sizes, strict=True)
    }


def _sha256s(images: dict[int, bytes], ids: list[int]) -> pa.Array:
    return pa.array([hashlib.sha256(images.get(i, b"absent")).hexdigest() for i in ids])


def test_a_pack_gives_back_each_image_by_id_and_sha256_across_batches(
    tmp_path: Path, images: dict[int, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_packs, "BATCH_ROWS", 4)  # several batches, a take across them
    path = tmp_path / "pack.arrow"
    triples = ((i, hashlib.sha256(data).hexdigest(), data) for i, data in images.items())
    assert write_pack(triples, path) == len(images)
    pack = ImagePack(path)
    known = list(images)
    asked = [known[20], known[0], 10_001, known[3], known[19], known[7], -5, known[4]]
    sha256s = _sha256s(images, asked)
    sha256s = pa.array([*sha256s.to_pylist()[:5], "0" * 64, *sha256s.to_pylist()[6:]])

    rows = pack.find(np.array(asked, np.int64), sha256s)

    found = [i for index, i in enumerate(asked) if index not in (2, 5, 6)]
    assert (rows >= 0).tolist() == [True, True, False, True, True, False, False, True]
    taken = pack.take(rows[rows >= 0])
    assert taken.images.to_pylist() == [images[i] for i in found]
    assert taken.crcs.tolist() == [zlib.crc32(images[i]) for i in found]
    assert len(pack) == len(images)


def test_an_empty_pack_finds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.arrow"
    write_pack(iter([]), path)

    rows = ImagePack(path).find(np.array([1, 2], np.int64), pa.array(["a", "b"]))

    assert rows.tolist() == [-1, -1]


def test_ids_out_of_order_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="ids must ascend"):
        write_pack(iter([(3, "a", b"a"), (3, "b", b"b")]), tmp_path / "pack.arrow")


def test_a_file_that_is_not_a_pack_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.arrow"
    junk.write_bytes(b"not arrow at all")
    other = tmp_path / "other.arrow"
    with pa.OSFile(str(other), "wb") as sink, pa.ipc.new_file(sink, pa.schema([("x", pa.int8())])):
        pass

    with pytest.raises(PackError, match="not an image pack"):
        ImagePack(junk)
    with pytest.raises(PackError, match="its columns are"):
        ImagePack(other)


# ---- written for a job ----


def _clean_job(count: int = 5) -> GenerationJob:
    job = generate_clean(f"clean-{count}", count)
    assert job.status == JobStatus.SUCCEEDED
    return job


def _packed(job: GenerationJob) -> dict[int, bytes]:
    pack = ImagePack(Path(job.image_pack.path))
    examples = list(Example.objects.filter(job=job).order_by("pk"))
    rows = pack.find(
        np.array([example.pk for example in examples], np.int64),
        pa.array([example.image_sha256 for example in examples]),
    )
    taken = iter(pack.take(rows[rows >= 0]).images.to_pylist())
    return {
        example.pk: next(taken) for example, row in zip(examples, rows, strict=True) if row >= 0
    }


def _stored(job: GenerationJob) -> dict[int, bytes]:
    return {example.pk: example.image.read() for example in Example.objects.filter(job=job)}


@pytest.mark.django_db
def test_a_succeeded_job_s_pack_holds_every_image_once(
    django_capture_on_commit_callbacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(tasks.pack_job_images, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        job = _clean_job()
    assert queued == [job.pk]  # asked for as the job finished

    packed = services.pack_job_images(job.pk)

    assert packed is not None
    assert packed.image_pack.name.startswith("packs/")
    assert _packed(packed) == _stored(job)
    again = services.pack_job_images(job.pk)  # idempotent: the same file, no other
    assert again is not None
    assert again.image_pack.name == packed.image_pack.name


@pytest.mark.django_db
def test_a_job_that_has_not_succeeded_gets_no_pack() -> None:
    job = _clean_job()
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)

    unpacked = services.pack_job_images(job.pk)

    assert unpacked is not None
    assert unpacked.image_pack.name == ""
    assert services.pack_job_images(10**9) is None


@pytest.mark.django_db
def test_an_image_that_is_not_its_row_s_stays_out_of_the_pack() -> None:
    job = _clean_job()
    changed, missing, *kept = Example.objects.filter(job=job).order_by("pk")
    changed.image.storage.delete(str(changed.image.name))
    changed.image.storage.save(str(changed.image.name), ContentFile(b"other bytes"))
    missing.image.storage.delete(str(missing.image.name))

    packed = services.pack_job_images(job.pk)

    assert packed is not None
    assert set(_packed(packed)) == {example.pk for example in kept}


@pytest.mark.django_db
def test_of_two_workers_packing_at_once_one_pack_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    job = _clean_job()
    storage = job.image_pack.storage
    real = services.write_pack
    theirs: list[str] = []

    def other_worker_first(images, path: Path) -> int:
        written = real(images, path)
        theirs.append(storage.save("packs/theirs.arrow", ContentFile(path.read_bytes())))
        GenerationJob.objects.filter(pk=job.pk).update(image_pack=theirs[0])
        return written

    monkeypatch.setattr(services, "write_pack", other_worker_first)
    before = set(storage.listdir("packs")[1]) if storage.exists("packs") else set()

    packed = services.pack_job_images(job.pk)

    assert packed is not None
    assert packed.image_pack.name == theirs[0]
    assert set(storage.listdir("packs")[1]) - before == {Path(theirs[0]).name}  # ours is gone
    assert _packed(packed) == _stored(job)


@pytest.mark.django_db
def test_the_command_packs_the_succeeded_jobs_that_have_no_pack() -> None:
    done, other, cancelled = _clean_job(3), _clean_job(2), _clean_job(4)
    services.pack_job_images(other.pk)
    other.refresh_from_db()
    GenerationJob.objects.filter(pk=cancelled.pk).update(status=JobStatus.CANCELLED)
    output = io.StringIO()

    call_command("pack_images", stdout=output)

    assert output.getvalue().strip() == "1 jobs packed."
    done.refresh_from_db()
    assert _packed(done) == _stored(done)
    assert GenerationJob.objects.get(pk=other.pk).image_pack.name == other.image_pack.name
    assert GenerationJob.objects.get(pk=cancelled.pk).image_pack.name == ""


@pytest.mark.django_db
def test_the_command_refuses_unknown_or_unfinished_jobs_and_packs_nothing() -> None:
    done, cancelled = _clean_job(3), _clean_job(2)
    GenerationJob.objects.filter(pk=cancelled.pk).update(status=JobStatus.CANCELLED)

    with pytest.raises(CommandError, match=f"no generation job {10**9}"):
        call_command("pack_images", done.pk, 10**9)
    with pytest.raises(CommandError, match=f"job {cancelled.pk} has not succeeded"):
        call_command("pack_images", done.pk, cancelled.pk)

    assert not GenerationJob.objects.exclude(image_pack="").exists()


@pytest.mark.django_db
def test_a_lost_or_damaged_pack_is_written_anew_and_the_old_file_deleted() -> None:
    job = services.pack_job_images(_clean_job(3).pk)
    assert job is not None
    damaged = Path(job.image_pack.path)
    damaged.write_bytes(b"damaged")

    with pytest.raises(CommandError, match="--repack needs the jobs"):
        call_command("pack_images", "--repack")
    call_command("pack_images", "--repack", job.pk, stdout=io.StringIO())

    job.refresh_from_db()
    assert Path(job.image_pack.path) != damaged
    assert not damaged.exists()
    assert _packed(job) == _stored(job)
