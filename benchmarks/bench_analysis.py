"""Exports and the study report on a study of 1,000,000 labels (PostgreSQL) or
100,000 labels (SQLite), on this machine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_analysis.py
        [--database postgresql|sqlite] [--labels N] [--examples-per-setting N] [--k 20]
        [--skip-report] [--exports annotations:csv,examples:hf] [--repeats 3]
        [--keep-database | --reuse-database]

The script makes its own database (PostgreSQL: ``advstudy_analysisbench``, dropped and
made again on every run; SQLite: a file in a temporary folder), migrates it, and
seeds a finished study (benchmarks/analysis_bench/seeding.py: COPY on PostgreSQL,
executemany on SQLite, the same rows on both): 20 attack settings, k = 20 labels per
example (10 classes + "can't tell"), participants with 50-200 labels each (2%
excluded), 3 models with a prediction on every example, real MNIST PNGs on disk. At
1,000,000 labels that is 50,000 examples and about 8,000 participants; --labels sets
the size, the examples following from it. --keep-database keeps the database and the
images for a later --reuse-database run.

Exports: every table x format (annotations, examples, participants x CSV, JSON Lines,
Parquet) and the examples as the Hugging Face imagefolder zip (hf), each in a fresh
child process that sets Django up, connects, and writes the export to a file as
``manage.py export_study`` does (analysis.exports.write_export). Each export runs
--repeats times (3), the exports taken in turn so that a busy spell of this shared
machine falls on all of them; the table gives the median time, on which the goal is
judged, with the fastest and slowest run, and the most memory any run took. Memory is
*peak RSS growth*: the child's peak resident set during the export (the kernel's
VmHWM, reset through /proc/self/clear_refs just before) minus its resident set just
before it; the absolute peak is shown beside it. Excluded participants are left out,
as the defaults do.

Beside each export, in the same run and as often, each in a child of its own just
before the table's exports: its bound, reading the same statement's Arrow record
batches alone (``analysis.reading.read_snapshot()`` and ``Table.batches``, the
finished batches as the writers get them, with no writer); for the zip, a peer:
Python's zipfile storing the same PNG files (no database, no metadata).

Report: ``analysis.report.study_report`` (the one call is ``run_study_report`` below)
against the same measures the pandas + crowd-kit way
(benchmarks/analysis_bench/pandas_report.py), each in its own child process, on the
same data in the same run.

Goals (PostgreSQL, 1,000,000 labels): every export at most 5 s median and at most
300 MB peak RSS growth; the report at most 3 s and faster than the pandas path. On
SQLite the figures are for comparison, with no goal.
"""

from __future__ import annotations

import argparse
import base64
import io
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
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from pg_admin import connect, drop_database, recreate_database

REPOSITORY = Path(__file__).resolve().parent.parent
POSTGRESQL_URL = "postgres://postgres@127.0.0.1:5432/advstudy_analysisbench"
DEFAULT_LABELS = {"postgresql": 1_000_000, "sqlite": 100_000}
SETTINGS = 20  # benchmarks/analysis_bench/seeding.py: setting_plans()
EXPORTS = [
    ("annotations", "csv"),
    ("annotations", "jsonl"),
    ("annotations", "parquet"),
    ("examples", "csv"),
    ("examples", "jsonl"),
    ("examples", "parquet"),
    ("examples", "hf"),
    ("participants", "csv"),
    ("participants", "jsonl"),
    ("participants", "parquet"),
]
GOAL_EXPORT_S, GOAL_MB, GOAL_REPORT_S = 5.0, 300, 3.0
# A kept database's images (and SQLite's file), one folder per database.
KEPT = Path(tempfile.gettempdir()) / "advstudy-analysisbench"


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


def _memory(memory: PeakRss) -> dict[str, Any]:
    return {
        "before_mb": memory.before_kib / 1024,
        "peak_mb": memory.peak_kib / 1024,
        "growth_mb": (memory.peak_kib - memory.before_kib) / 1024,
        "memory_method": memory.method,
    }


# ---- the children ----


def child_main(task: dict[str, Any]) -> dict[str, Any]:
    import django

    django.setup()
    from django.db import connection

    from study.models import Study

    study = Study.objects.get(pk=task["study_id"])
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        # Loaded once in a serving process: neither an export nor its bound pays for it.
        import adbc_driver_postgresql.dbapi  # noqa: F401
    children: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
        "export": _child_export,
        "bound": _child_bound,
        "report": _child_report,
        "pandas": _child_pandas,
    }
    return children[task["what"]](study, task)


def _child_export(study: Any, task: dict[str, Any]) -> dict[str, Any]:
    from analysis.exports import ExportRequest, count_rows, write_export

    request = ExportRequest(task["table"], task["format"])
    rows = count_rows(study, request)
    output = Path(task["output"])
    memory = PeakRss()
    with memory.measure():
        started = time.perf_counter()
        size = write_export(study, request, output)
        seconds = time.perf_counter() - started
    output.unlink()
    return {"rows": rows, "seconds": seconds, "bytes": size, **_memory(memory)}


class _Discard(io.RawIOBase):
    """A write-only stream that keeps nothing and cannot seek, as a response body."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def _child_bound(study: Any, task: dict[str, Any]) -> dict[str, Any]:
    """Seconds to read a table's statement as its finished Arrow batches with no writer
    (the table built and the snapshot opened as the export does); for hf, for zipfile
    to store the zip's PNG files."""
    from analysis.exports.tables import TABLES
    from analysis.reading import read_snapshot

    if task["table"] == "hf":
        return {"seconds": _zipfile_peer(study)}
    started = time.perf_counter()
    with read_snapshot() as snapshot:
        for _batch in TABLES[task["table"]](study).batches(snapshot):
            pass
    return {"seconds": time.perf_counter() - started}


def _zipfile_peer(study: Any) -> float:
    import zipfile

    from attacks.models import Example
    from study.models import ANALYSED_ITEM_KINDS

    storage = Example._meta.get_field("image").storage
    names = Example.objects.filter(
        study_items__study=study, study_items__kind__in=ANALYSED_ITEM_KINDS
    ).values_list("id", "image")
    files = [(example_id, storage.path(name)) for example_id, name in names]
    started = time.perf_counter()
    with zipfile.ZipFile(_Discard(), "w") as archive:
        for example_id, path in files:
            with open(path, "rb") as image:
                archive.writestr(f"images/{example_id}.png", image.read(), zipfile.ZIP_STORED)
    return time.perf_counter() - started


def run_study_report(study: Any) -> Any:
    """THE call under test: analysis.report.study_report, with the page's defaults."""
    from analysis.report import study_report

    return study_report(study, include_excluded=False)


def _child_report(study: Any, task: dict[str, Any]) -> dict[str, Any]:
    memory = PeakRss()
    with memory.measure():
        started = time.perf_counter()
        report = run_study_report(study)
        seconds = time.perf_counter() - started
    settings = getattr(report, "settings", ())
    return {"seconds": seconds, "settings": len(settings), **_memory(memory)}


def _child_pandas(study: Any, task: dict[str, Any]) -> dict[str, Any]:
    from analysis_bench.pandas_report import pandas_report, postgresql_reader, sqlite_reader
    from django.db import connection

    memory = PeakRss()
    with memory.measure(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            read = postgresql_reader(cursor.cursor)
        else:
            read = sqlite_reader(connection.connection)
        result = pandas_report(read, study.pk)
    return {
        "seconds": result["seconds"]["total"],
        "parts": result["seconds"],
        "settings": len(result["settings"]),
        **_memory(memory),
    }


def in_child(task: dict[str, Any], environment: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", json.dumps(task)]
    env = {**os.environ, **environment, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"child {task} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ---- the database ----


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def recreate(url: str) -> None:
    if url.startswith("sqlite:"):
        drop(url)
    else:
        recreate_database(url)


def drop(url: str) -> None:
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    else:
        drop_database(url)


def setup_django(environment: dict[str, str]) -> None:
    os.environ.update(environment)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def warm_up(url: str, media: Path) -> None:
    """Read the tables and the image files once, so that neither the first export nor
    the zip (or its peer) pays for a cold cache alone."""
    if url.startswith("sqlite:"):
        sqlite_path(url).read_bytes()
    else:
        connection = connect(url)
        with connection.cursor() as cursor:
            for table in ("labeling_label", "labeling_participant", "study_studyitem"):
                cursor.execute(f"SELECT count(*) FROM {table}")
            cursor.execute("SELECT count(*), sum(length(image)) FROM attacks_example")
        connection.close()
    for path in media.rglob("*.png"):
        path.read_bytes()


# ---- the figures ----


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


def bound_of(export: tuple[str, str]) -> str:
    """What an export is measured against: its table's read, or for hf the zipfile peer."""
    table, export_format = export
    return "hf" if export_format == "hf" else table


def meets_goal(result: dict[str, Any]) -> bool:
    return result["seconds"] <= GOAL_EXPORT_S and result["growth_mb"] <= GOAL_MB


def export_rows(
    results: list[tuple[str, str, dict[str, Any]]], bounds: dict[str, float], goals: bool
) -> list[str]:
    lines = [
        "| table | format | rows | seconds (median; fastest-slowest) | rows/s | size MB "
        "| peak RSS growth MB | peak RSS MB (absolute) | bound (or peer) s | time / bound "
        "| goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for table, export_format, result in results:
        key = bound_of((table, export_format))
        bound = bounds.get(key)
        against = (
            f"{bound:.2f}{' (zipfile)' if key == 'hf' else ''} | {result['seconds'] / bound:.1f}x"
            if bound
            else "- | -"
        )
        verdict = ("met" if meets_goal(result) else "NOT met") if goals else "-"
        lines.append(
            f"| {table} | {export_format} | {result['rows']:,} | {result['seconds']:.2f} "
            f"({result['fastest']:.2f}-{result['slowest']:.2f}) "
            f"| {result['rows'] / result['seconds']:,.0f} | {result['bytes'] / 1e6:.1f} "
            f"| {result['growth_mb']:.0f} | {result['peak_mb']:.0f} | {against} | {verdict} |"
        )
    return lines


def report_rows(ours: dict[str, Any], pandas: dict[str, Any]) -> list[str]:
    parts = ", ".join(f"{name} {value:.2f} s" for name, value in pandas["parts"].items())
    return [
        "| report | seconds | peak RSS growth MB | peak RSS MB (absolute) | notes |",
        "|---|---|---|---|---|",
        f"| analysis.report.study_report | {ours['seconds']:.2f} | {ours['growth_mb']:.0f} "
        f"| {ours['peak_mb']:.0f} | {ours['settings']} settings |",
        f"| pandas + crowd-kit + statsmodels + krippendorff | {pandas['seconds']:.2f} "
        f"| {pandas['growth_mb']:.0f} | {pandas['peak_mb']:.0f} | {parts} |",
    ]


def goal_lines(
    exports: list[tuple[str, str, dict[str, Any]]],
    ours: dict[str, Any] | None,
    pandas: dict[str, Any] | None,
) -> list[str]:
    """One verdict line per goal."""

    def verdict(name: str, checked: list[tuple[str, float, bool]], unit: str) -> str:
        if not checked:
            return f"{name}: not measured in this run."
        missed = [
            f"{what} {value:.{1 if unit == 's' else 0}f} {unit}"
            for what, value, ok in checked
            if not ok
        ]
        return f"{name}: " + (
            "met by every one." if not missed else f"NOT met by {', '.join(missed)}."
        )

    tables = [(f"{t} {f}", r["seconds"]) for t, f, r in exports if f != "hf"]
    zips = [(f"{t} {f}", r["seconds"]) for t, f, r in exports if f == "hf"]
    lines = [
        verdict(
            f"Table exports at most {GOAL_EXPORT_S:g} s median",
            [(what, s, s <= GOAL_EXPORT_S) for what, s in tables],
            "s",
        ),
        verdict(
            f"HF imagefolder zip at most {GOAL_EXPORT_S:g} s median",
            [(what, s, s <= GOAL_EXPORT_S) for what, s in zips],
            "s",
        ),
        verdict(
            f"Peak RSS growth at most {GOAL_MB} MB for each export",
            [(f"{t} {f}", r["growth_mb"], r["growth_mb"] <= GOAL_MB) for t, f, r in exports],
            "MB",
        ),
    ]
    if ours is not None and pandas is not None:
        met = ours["seconds"] <= GOAL_REPORT_S and ours["seconds"] < pandas["seconds"]
        lines.append(
            f"Report at most {GOAL_REPORT_S:g} s and faster than the pandas path: "
            f"{'met' if met else 'NOT met'}: {ours['seconds']:.2f} s against "
            f"{pandas['seconds']:.2f} s ({pandas['seconds'] / ours['seconds']:.1f}x)."
        )
    return lines


# ---- the run ----


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--labels", type=int, help="default 1,000,000 on PostgreSQL, 100,000 on SQLite"
    )
    parser.add_argument(
        "--examples-per-setting", type=int, help=f"default labels / ({SETTINGS} settings x k)"
    )
    parser.add_argument("--k", type=int, default=20, help="labels per example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--database-url", help=f"PostgreSQL only; default {POSTGRESQL_URL} (made afresh)"
    )
    parser.add_argument("--skip-report", action="store_true", help="exports only")
    parser.add_argument(
        "--keep-database", action="store_true", help=f"keep it and the images in {KEPT}/<database>"
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
    args = parser.parse_args()
    if args.labels is None:
        args.labels = DEFAULT_LABELS[args.database]
    if args.examples_per_setting is None:
        args.examples_per_setting = args.labels // (SETTINGS * args.k)
    return args


def timed(what: str, action: Callable[[], Any]) -> Any:
    print(f"{what} ...", file=sys.stderr, flush=True)
    return action()


def database_url(args: argparse.Namespace, workspace: Path) -> str:
    if args.database == "postgresql":
        return str(args.database_url or POSTGRESQL_URL)
    kept = args.keep_database or args.reuse_database
    return f"sqlite:///{(KEPT / 'sqlite' if kept else workspace) / 'analysisbench.sqlite3'}"


def main() -> None:
    args = parse_arguments()
    if args.child:
        print(json.dumps(child_main(json.loads(args.child))))
        return
    workspace = Path(tempfile.mkdtemp(prefix="advstudy-analysisbench-"))
    kept = args.keep_database or args.reuse_database
    media = KEPT / args.database / "media" if kept else workspace / "media"
    url = database_url(args, workspace)
    environment = {
        "DATABASE_URL": url,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        # The secrets that settings require with DEBUG off (a Fernet key for the ids).
        "ADVSTUDY_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "ADVSTUDY_ID_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
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
            if kept:
                (KEPT / args.database).mkdir(parents=True, exist_ok=True)
            recreate(url)
            setup_django(environment)
            seeded = timed("seeding", partial(seed, media, args))
        from django.db import connections

        connections.close_all()
        warm_up(url, media)
        run_all(args, seeded, workspace, environment)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
        if not kept:
            drop(url)


def run_all(
    args: argparse.Namespace, seeded: Any, workspace: Path, environment: dict[str, str]
) -> None:
    chosen = chosen_exports(args.exports)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {name: [] for name in chosen}
    bounds: dict[str, list[float]] = {bound_of(name): [] for name in chosen}
    for repeat in range(1, max(1, args.repeats) + 1):
        # Each bound just before its exports, in a child of its own as they are.
        for export in chosen:
            table, export_format = export
            bound = bound_of(export)
            if len(bounds[bound]) < repeat:
                task: dict[str, Any] = {
                    "what": "bound",
                    "study_id": seeded.study_id,
                    "table": bound,
                }
                measured = timed(
                    f"bound {bound} (run {repeat})", partial(in_child, task, environment)
                )
                bounds[bound].append(measured["seconds"])
            task = {
                "what": "export",
                "study_id": seeded.study_id,
                "table": table,
                "format": export_format,
                "output": str(workspace / f"export.{export_format}"),
            }
            what = f"export {table} {export_format} (run {repeat})"
            runs[export].append(timed(what, partial(in_child, task, environment)))
    exports = [(table, fmt, combined(results)) for (table, fmt), results in runs.items()]
    ours = pandas = None
    if not args.skip_report:
        task = {"what": "report", "study_id": seeded.study_id}
        ours = timed("study_report", partial(in_child, task, environment))
        task = {"what": "pandas", "study_id": seeded.study_id}
        pandas = timed("pandas report", partial(in_child, task, environment))
    medians = {name: statistics.median(times) for name, times in bounds.items()}
    print_results(args, seeded, exports, medians, ours, pandas)


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


def versions() -> str:
    from importlib.metadata import version

    import django
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            database = f"PostgreSQL {cursor.fetchone()[0]}"
        reader = f"adbc-driver-postgresql {version('adbc-driver-postgresql')}"
    else:
        import sqlite3

        database = f"SQLite {sqlite3.sqlite_version}"
        reader = "Django's DB-API cursor"
    libraries = ", ".join(
        f"{name} {version(name)}" for name in ("pyarrow", "polars", "zipstream-ng")
    )
    return (
        f"{database} (read through {reader}), Django {django.get_version()}, Python "
        f"{platform.python_version()}, {libraries}"
    )


def print_results(
    args: argparse.Namespace,
    seeded: Any,
    exports: list[tuple[str, str, dict[str, Any]]],
    bounds: dict[str, float],
    ours: dict[str, Any] | None,
    pandas: dict[str, Any] | None,
) -> None:
    load = os.getloadavg()
    how = "COPY" if args.database == "postgresql" else "executemany"
    print(
        f"Study: {seeded.labels:,} labels, {seeded.examples:,} examples in {seeded.settings} "
        f"settings (k = {args.k}), {seeded.participants:,} participants ({seeded.excluded} "
        f"excluded, left out of the exports), {seeded.models} models; "
        + (f"seeded with {how} in {seeded.seconds:.1f} s" if seeded.seconds else "reused")
        + f". {versions()}; {os.cpu_count()} cores, load average {load[0]:.1f} "
        f"(the machine is shared)."
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
    print("\n".join(export_rows(exports, bounds, goals=args.database == "postgresql")))
    print(
        "Bound: the same statement's Arrow batches read alone, finished as the writers get "
        "them (read_snapshot() + Table.batches, no writer), in a child of its own, median of "
        "as many runs. hf: its peer, zipfile storing the same PNG files into a stream (no "
        "database, no metadata)."
    )
    print()
    if ours is not None and pandas is not None:
        print("\n".join(report_rows(ours, pandas)))
        print()
    if args.database == "postgresql":
        print("\n".join(goal_lines(exports, ours, pandas)))
    else:
        print("SQLite: figures for comparison with PostgreSQL's; no goal.")
    print()
    print(
        "Command: "
        + shlex.join(
            ["OMP_NUM_THREADS=1", ".venv/bin/python", "benchmarks/bench_analysis.py", *sys.argv[1:]]
        )
    )


if __name__ == "__main__":
    main()
