"""Exports and the study report on a study of 1,000,000 labels, in PostgreSQL on this machine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_analysis.py
        [--labels 1000000] [--examples-per-setting 2500] [--k 20] [--skip-report]
        [--exports annotations:csv,examples:hf] [--repeats 3]
        [--keep-database | --reuse-database]

The script makes its own database (``advstudy_analysisbench``, dropped and made
again on every run, dropped at the end unless --keep-database, which keeps it and
the images for a later --reuse-database run), migrates it, and
seeds a finished study with COPY (benchmarks/analysis_bench/seeding.py): 20 attack
settings x 2,500 examples, k = 20 labels per example (10 classes + "can't tell"),
about 8,000 participants with 50-200 labels each (2% excluded), 3 models with a
prediction on every example, real MNIST PNGs on disk.

Exports: every table x format (annotations, examples, participants x CSV, JSON Lines,
Parquet; examples also as the Hugging Face imagefolder zip, its images taken from the
jobs' image packs as the seeding's finished jobs have them, and as hf-files, every
image read from its own file, as for jobs with no pack), each in a fresh child
process that sets Django up, connects, and then writes the export to a file as
``manage.py export_study`` does (analysis.exports.write_export). Each export runs
--repeats times (3), the exports taken in turn so that a busy spell of this shared
machine falls on all of them; the table gives the median time, on which the goal is
judged, with the fastest and slowest run, and the most memory any run took. Measured
in each child: wall time of the export (all its queries included), rows per second, memory as
*peak RSS growth*: the process's peak resident set during the export (the kernel's
VmHWM, reset through /proc/self/clear_refs just before) minus its resident set just
before it; the absolute peak RSS of the child is shown beside it. Excluded
participants are left out, as the defaults do. Goal: >= 100,000 rows/s and < 300 MB.
Beside each export, its bound measured in the same run (BOUND_QUERIES, _image_bounds):
PostgreSQL alone reading the stored rows the table is made of; for the imagefolder
zip, those of the examples plus reading the image packs whole, and for hf-files,
reading its PNG files alone (open, read, close, one thread: no zip, no database);
as a peer, Python's zipfile storing the same files.

Report: ``analysis.report.study_report`` (the one call is ``run_study_report``
below) against the same measures the pandas + crowd-kit way
(benchmarks/analysis_bench/pandas_report.py), each in its own child process,
on the same data in the same run. Goal: ours <= 3 s and faster than the pandas path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import patch

from pg_admin import connect, drop_database, recreate_database

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/advstudy_analysisbench"
EXPORTS = [
    ("annotations", "csv"),
    ("annotations", "jsonl"),
    ("annotations", "parquet"),
    ("examples", "csv"),
    ("examples", "jsonl"),
    ("examples", "parquet"),
    ("examples", "hf"),
    ("examples", "hf-files"),
    ("participants", "csv"),
    ("participants", "jsonl"),
    ("participants", "parquet"),
]
GOAL_ROWS_PER_S, GOAL_MB, GOAL_REPORT_S = 100_000, 300, 3.0
# The imagefolder zip with every image read from its file: what a study whose jobs
# have no pack yet gets; the export itself is hf.
REFERENCE_ONLY = ("hf-files",)
KEPT_MEDIA = Path(tempfile.gettempdir()) / "advstudy-analysisbench-media"


# ---- memory, in the child ----


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class PeakRss:
    """Peak resident set over a block: the kernel's high-water mark, reset at the start.

    Where /proc/self/clear_refs cannot be written, a thread samples VmRSS every 2 ms.
    """

    def __init__(self) -> None:
        self.before_kib = 0
        self.peak_kib = 0
        self.method = "VmHWM reset by clear_refs"

    @contextmanager
    def measure(self) -> Iterator[None]:
        self.before_kib = _status_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "VmRSS sampled every 2 ms"
        stop = threading.Event()
        sampled = [self.before_kib]

        def sample() -> None:
            while not stop.wait(0.002):
                sampled.append(_status_kib("VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        if self.method.startswith("VmRSS"):
            sampler.start()
        try:
            yield
        finally:
            stop.set()
            if sampler.is_alive():
                sampler.join()
            high = _status_kib("VmHWM") if self.method.startswith("VmHWM") else max(sampled)
            self.peak_kib = max(high, _status_kib("VmRSS"))


# ---- the children ----


def child_main(task: dict[str, Any]) -> dict[str, Any]:
    import django

    django.setup()
    from django.db import connection

    from study.models import Study

    study = Study.objects.get(pk=task["study_id"])
    connection.ensure_connection()
    if task["what"] == "export":
        return _child_export(study, task)
    if task["what"] == "report":
        return _child_report(study)
    if task["what"] == "bounds":
        return _child_bounds(study)
    return _child_pandas(study)


def _child_export(study: Any, task: dict[str, Any]) -> dict[str, Any]:
    from analysis.exports import ExportRequest, count_rows, imagefolder, write_export

    request = ExportRequest(task["table"], task["format"].removesuffix("-files"))
    rows = count_rows(study, request)
    output = Path(task["output"])
    memory = PeakRss()
    # hf-files: the same zip as if no job had an image pack, every image read from its
    # own file (a study whose jobs were stored before packs existed, until pack_images).
    no_packs = patch.object(imagefolder, "_packs", dict) if task["format"] == "hf-files" else None
    with no_packs or nullcontext(), memory.measure():
        started = time.perf_counter()
        size = write_export(study, request, output)
        seconds = time.perf_counter() - started
    output.unlink()
    return {"rows": rows, "seconds": seconds, "bytes": size, **_memory(memory)}


class _Discard:
    def write(self, data: bytes | str) -> int:
        return len(data)


# What no export of a table can beat on this machine, measured in the same run: for
# each table, PostgreSQL alone reading the rows it is made of, every column as it is
# stored, with no join beyond the one that finds them (through COPY into nothing; the
# examples' votes and the participants' figures are kept on those rows); for the
# imagefolder zip, reading its PNG files, one open, read and close each, and nothing
# else (no zip, no database). Beside it, a peer: zipfile storing the same files.
BOUND_QUERIES = {
    "annotations": "SELECT l.* FROM labeling_label l JOIN study_studyitem i ON i.id = l.item_id"
    " WHERE i.study_id = {study}",
    "examples": "SELECT i.*, e.* FROM study_studyitem i"
    " JOIN attacks_example e ON e.id = i.example_id WHERE i.study_id = {study}",
    "participants": "SELECT * FROM labeling_participant WHERE study_id = {study}",
}


def _child_bounds(study: Any) -> dict[str, Any]:
    from django.db import connection

    bounds = {}
    with connection.cursor() as cursor:
        for table, query in BOUND_QUERIES.items():
            started = time.perf_counter()
            sql = query.format(study=int(study.pk))
            cursor.copy_expert(f"COPY ({sql}) TO STDOUT", _Discard())
            bounds[table] = time.perf_counter() - started
    bounds["hf-files"], bounds["hf_zipfile"] = _image_bounds(study)
    bounds["hf"] = bounds["examples"] + _pack_reads()
    return bounds


def _pack_reads() -> float:
    """Seconds to read every image pack whole (the study's jobs are all its settings')."""
    from attacks.models import GenerationJob

    paths = [job.image_pack.path for job in GenerationJob.objects.exclude(image_pack="")]
    started = time.perf_counter()
    for path in paths:
        Path(path).read_bytes()
    return time.perf_counter() - started


def _image_bounds(study: Any) -> tuple[float, float]:
    """Seconds to read the study's PNG files alone, and for zipfile to store them."""
    import zipfile

    from analysis.exports.writers import Sink
    from analysis.queries import ANALYSED_KINDS
    from attacks.models import Example

    storage = Example._meta.get_field("image").storage
    names = list(
        Example.objects.filter(
            study_items__study=study, study_items__kind__in=ANALYSED_KINDS
        ).values_list("id", "image")
    )
    paths = [storage.path(name) for _, name in names]
    started = time.perf_counter()
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        os.read(descriptor, 1 << 16)
        os.close(descriptor)
    reads = time.perf_counter() - started
    sink = Sink()  # a non-seekable stream, drained as the export drains its own
    started = time.perf_counter()
    with zipfile.ZipFile(sink, "w") as archive:
        for count, ((example_id, _), path) in enumerate(zip(names, paths, strict=True)):
            with open(path, "rb") as image:
                archive.writestr(f"images/{example_id}.png", image.read(), zipfile.ZIP_STORED)
            if count % 1000 == 0:
                sink.drain()
    sink.drain()
    return reads, time.perf_counter() - started


def run_study_report(study: Any) -> Any:
    """THE call under test: analysis.report.study_report, with the page's defaults."""
    from analysis.report import study_report

    return study_report(study, include_excluded=False)


def _child_report(study: Any) -> dict[str, Any]:
    memory = PeakRss()
    with memory.measure():
        started = time.perf_counter()
        report = run_study_report(study)
        seconds = time.perf_counter() - started
    settings = getattr(report, "settings", ())
    return {"seconds": seconds, "settings": len(settings), **_memory(memory)}


def _child_pandas(study: Any) -> dict[str, Any]:
    from analysis_bench.pandas_report import pandas_report
    from django.db import connection

    memory = PeakRss()
    with memory.measure(), connection.cursor() as cursor:
        result = pandas_report(cursor.cursor, study.pk)
    return {
        "seconds": result["seconds"]["total"],
        "parts": result["seconds"],
        "settings": len(result["settings"]),
        **_memory(memory),
    }


def _memory(memory: PeakRss) -> dict[str, Any]:
    return {
        "before_mb": memory.before_kib / 1024,
        "peak_mb": memory.peak_kib / 1024,
        "growth_mb": (memory.peak_kib - memory.before_kib) / 1024,
        "memory_method": memory.method,
    }


def in_child(task: dict[str, Any], environment: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", json.dumps(task)]
    env = {**os.environ, **environment, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"child {task} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ---- the database ----


def setup_django(environment: dict[str, str]) -> None:
    os.environ.update(environment)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def warm_up(url: str, media: Path) -> None:
    """Read the tables and the image files once, so that neither the first export nor
    the zip (or its bound) pays for a cold cache alone."""
    connection = connect(url)
    with connection.cursor() as cursor:
        for table in ("labeling_label", "labeling_participant", "study_studyitem"):
            cursor.execute(f"SELECT count(*) FROM {table}")
        cursor.execute("SELECT count(*), sum(length(image)) FROM attacks_example")
    connection.close()
    for path in media.rglob("*.png"):
        path.read_bytes()


# ---- the run ----


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one export: the median time (the goal is judged on it), the fastest
    and slowest, and the most memory that any run took."""
    times = sorted(run["seconds"] for run in runs)
    return {
        **runs[0],
        "seconds": statistics.median(times),
        "fastest": times[0],
        "slowest": times[-1],
        "runs": len(runs),
        "growth_mb": max(run["growth_mb"] for run in runs),
        "peak_mb": max(run["peak_mb"] for run in runs),
    }


def megabytes(value: float) -> str:
    return f"{value:.0f}"


def bound_seconds(bounds: dict[str, float], table: str, export_format: str) -> float | None:
    return bounds.get(export_format if export_format.startswith("hf") else table)


def meets_goal(result: dict[str, Any]) -> bool:
    return result["rows"] / result["seconds"] >= GOAL_ROWS_PER_S and result["growth_mb"] < GOAL_MB


def export_rows(
    results: list[tuple[str, str, dict[str, Any]]], bounds: dict[str, float]
) -> list[str]:
    lines = [
        "| table | format | rows | seconds (median; fastest-slowest) | rows/s | size MB "
        "| peak RSS growth MB | peak RSS MB (absolute) | bound s | bound rows/s "
        "| time / bound | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for table, export_format, result in results:
        rate = result["rows"] / result["seconds"]
        met = meets_goal(result)
        bound = bound_seconds(bounds, table, export_format)
        against = (
            f"{bound:.2f} | {result['rows'] / bound:,.0f} | {result['seconds'] / bound:.1f}x"
            if bound
            else "- | - | -"
        )
        lines.append(
            f"| {table} | {export_format} | {result['rows']:,} | {result['seconds']:.2f} "
            f"({result['fastest']:.2f}-{result['slowest']:.2f}) "
            f"| {rate:,.0f} | {result['bytes'] / 1e6:.1f} | {megabytes(result['growth_mb'])} "
            f"| {megabytes(result['peak_mb'])} | {against} | {'met' if met else 'NOT met'}"
            f"{' (reference)' if export_format in REFERENCE_ONLY else ''} |"
        )
    return lines


def report_rows(ours: dict[str, Any] | None, pandas: dict[str, Any]) -> list[str]:
    lines = [
        "| report | seconds | peak RSS growth MB | peak RSS MB (absolute) | notes |",
        "|---|---|---|---|---|",
    ]
    if ours is not None:
        lines.append(
            f"| analysis.report.study_report | {ours['seconds']:.2f} "
            f"| {megabytes(ours['growth_mb'])} | {megabytes(ours['peak_mb'])} "
            f"| {ours['settings']} settings |"
        )
    parts = ", ".join(f"{name} {value:.2f} s" for name, value in pandas["parts"].items())
    lines.append(
        f"| pandas + crowd-kit + statsmodels + krippendorff | {pandas['seconds']:.2f} "
        f"| {megabytes(pandas['growth_mb'])} | {megabytes(pandas['peak_mb'])} | {parts} |"
    )
    return lines


def goal_lines(
    exports: list[tuple[str, str, dict[str, Any]]],
    ours: dict[str, Any] | None,
    pandas: dict[str, Any],
) -> list[str]:
    missed = [
        f"{table} {fmt}"
        for table, fmt, r in exports
        if fmt not in REFERENCE_ONLY and not meets_goal(r)
    ]
    lines = [
        f"Exports goal (>= {GOAL_ROWS_PER_S:,} rows/s and < {GOAL_MB} MB peak RSS growth): "
        + ("met by every export" if not missed else f"NOT met by {', '.join(missed)}")
        + (
            f" ({', '.join(REFERENCE_ONLY)}: shown for reference, not an export of its own)."
            if any(fmt in REFERENCE_ONLY for _, fmt, _ in exports)
            else "."
        )
    ]
    if ours is not None:
        met = ours["seconds"] <= GOAL_REPORT_S and ours["seconds"] < pandas["seconds"]
        lines.append(
            f"Report goal (<= {GOAL_REPORT_S:g} s and faster than the pandas path): "
            f"{'met' if met else 'NOT met'}: {ours['seconds']:.2f} s against "
            f"{pandas['seconds']:.2f} s ({pandas['seconds'] / ours['seconds']:.1f}x)."
        )
    return lines


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--examples-per-setting", type=int, default=2_500)
    parser.add_argument("--k", type=int, default=20, help="labels per example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--skip-report", action="store_true", help="exports only")
    parser.add_argument(
        "--keep-database", action="store_true", help=f"keep it and the images in {KEPT_MEDIA}"
    )
    parser.add_argument(
        "--reuse-database", action="store_true", help="measure a database kept by a run before"
    )
    parser.add_argument(
        "--exports", default="", help="only these, e.g. annotations:csv,examples:hf (default all)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each export, reported as the median"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def timed(what: str, action: Callable[[], Any]) -> Any:
    print(f"{what} ...", file=sys.stderr, flush=True)
    return action()


def main() -> None:
    args = parse_arguments()
    if args.child:
        print(json.dumps(child_main(json.loads(args.child))))
        return
    workspace = Path(tempfile.mkdtemp(prefix="advstudy-analysisbench-"))
    media = KEPT_MEDIA if args.keep_database or args.reuse_database else workspace / "media"
    environment = {
        "DATABASE_URL": args.database_url,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "MEDIA_ROOT": str(media),
        "LOG_LEVEL": "WARNING",
        "DATABASE_CONN_MAX_AGE": "0",
    }
    try:
        if args.reuse_database:
            setup_django(environment)
            seeded = kept_study()
        else:
            recreate_database(args.database_url)
            setup_django(environment)
            seeded = timed("seeding", partial(seed, media, args))
        from django.db import connections

        connections.close_all()
        warm_up(args.database_url, media)
        chosen = chosen_exports(args.exports)
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {name: [] for name in chosen}
        for repeat in range(1, max(1, args.repeats) + 1):
            for table, export_format in chosen:
                task: dict[str, Any] = {
                    "what": "export",
                    "study_id": seeded.study_id,
                    "table": table,
                    "format": export_format,
                    "output": str(workspace / f"export.{export_format}"),
                }
                what = f"export {table} {export_format} (run {repeat})"
                runs[(table, export_format)].append(
                    timed(what, partial(in_child, task, environment))
                )
        exports = [(table, fmt, combined(results)) for (table, fmt), results in runs.items()]
        bounds: dict[str, float] = {}
        if exports:
            task = {"what": "bounds", "study_id": seeded.study_id}
            bounds = timed("bounds", partial(in_child, task, environment))
        ours = None
        pandas: dict[str, Any] | None = None
        if not args.skip_report:
            task = {"what": "report", "study_id": seeded.study_id}
            ours = timed("study_report", partial(in_child, task, environment))
            task = {"what": "pandas", "study_id": seeded.study_id}
            pandas = timed("pandas report", partial(in_child, task, environment))
        print_results(args, seeded, exports, bounds, ours, pandas)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
        if not (args.keep_database or args.reuse_database):
            drop_database(args.database_url)


def seed(media: Path, args: argparse.Namespace) -> Any:
    from analysis_bench.seeding import seed_study

    shutil.rmtree(media, ignore_errors=True)
    return seed_study(
        media,
        labels=args.labels,
        examples_per_setting=args.examples_per_setting,
        labels_per_example=args.k,
        seed=args.seed,
    )


def kept_study() -> Any:
    from analysis_bench.seeding import Seeded

    from attacks.models import AttackSetting, ClassifierModel
    from labeling.models import Label, Participant
    from study.models import Study, StudyItem

    study = Study.objects.get()
    participants = Participant.objects.filter(study=study)
    return Seeded(
        study.pk,
        Label.objects.filter(item__study=study).count(),
        StudyItem.objects.filter(study=study).count(),
        AttackSetting.objects.count(),
        participants.count(),
        participants.filter(excluded=True).count(),
        ClassifierModel.objects.count(),
        0.0,
    )


def chosen_exports(names: str) -> list[tuple[str, str]]:
    if not names:
        return EXPORTS
    chosen = [tuple(name.strip().split(":", 1)) for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in EXPORTS]
    if unknown:
        sys.exit(f"unknown exports {unknown}: choose from {EXPORTS}")
    return [(table, export_format) for table, export_format in chosen]


def print_results(
    args: argparse.Namespace,
    seeded: Any,
    exports: list[tuple[str, str, dict[str, Any]]],
    bounds: dict[str, float],
    ours: dict[str, Any] | None,
    pandas: dict[str, Any] | None,
) -> None:
    import django
    import pyarrow
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    load = os.getloadavg()
    print(
        f"Study: {seeded.labels:,} labels, {seeded.examples:,} examples in {seeded.settings} "
        f"settings (k = {args.k}), {seeded.participants:,} participants ({seeded.excluded} "
        f"excluded, left out of the exports), {seeded.models} models; "
        + (f"seeded with COPY in {seeded.seconds:.1f} s" if seeded.seconds else "reused")
        + f". PostgreSQL {postgres}, Django {django.get_version()}, Python "
        f"{platform.python_version()}, pyarrow {pyarrow.__version__}; {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} (the machine is shared)."
    )
    method = exports[0][2]["memory_method"] if exports else "-"
    runs = exports[0][2]["runs"] if exports else 0
    print(
        f"Each export {runs} times, each in a fresh child process, to a file; seconds: the "
        f"median run; memory: the largest of the runs. Peak RSS growth = peak "
        f"during the export ({method}) minus RSS just before it (Django and the libraries "
        f"already loaded, connected); absolute = the child's peak RSS."
    )
    print()
    print("\n".join(export_rows(exports, bounds)))
    print(
        "Bound: what no export of the table can beat here, in the same run: PostgreSQL "
        "alone reading the stored rows the table is made of (labels; items with their "
        "examples; participants), every column as stored, COPY ... TO STDOUT into nothing. "
        "hf: the examples' bound plus reading the jobs' image packs whole; hf-files (the "
        "same zip, every image read from its own PNG file, as for jobs with no pack): its "
        "PNG files read, one open/read/close each, nothing else."
    )
    zips = {fmt: result["seconds"] for _, fmt, result in exports if fmt.startswith("hf")}
    if zips and "hf_zipfile" in bounds:
        peer = bounds["hf_zipfile"]
        print(
            f"Peer for hf: zipfile storing the same PNG files (no database, no metadata) "
            f"took {peer:.2f} s; the whole imagefolder export took "
            + ", ".join(f"{s:.2f} s as {fmt} ({s / peer:.2f}x)" for fmt, s in zips.items())
            + "."
        )
    print()
    if pandas is not None:
        print("\n".join(report_rows(ours, pandas)))
        print()
        print("\n".join(goal_lines(exports, ours, pandas)))
    else:
        print("\n".join(goal_lines(exports, None, {"seconds": 0.0})))
    print()
    print(
        "Command: "
        + shlex.join(
            ["OMP_NUM_THREADS=1", ".venv/bin/python", "benchmarks/bench_analysis.py", *sys.argv[1:]]
        )
    )


if __name__ == "__main__":
    main()
