"""One generation job's chunks shared by 1 and by 2 Celery worker processes: the speed-up.

    .venv/bin/python benchmarks/bench_parallel_generation.py [--chunks 24] [--chunk-size 32]

PGD (L-inf, eps 0.3) on the zoo's standard MNIST CNN, every zoo model predicting on each
stored image, as a job is generated in production. It makes its own PostgreSQL database
(``advstudy_bench_chunks``, afresh on every run) and runs its own redis-server on a free
port. Each worker runs one torch thread (OMP_NUM_THREADS=1), so that with 2 cores free
the ideal speed-up of 2 workers is 2. The time runs from queueing the job to its success,
the workers already started (each still loads the model and data on its first chunk).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

from pg_admin import recreate_database  # noqa: E402

REPOSITORY = BENCHMARKS.parent
DATABASE_URL = "postgres://postgres@127.0.0.1:5432/advstudy_bench_chunks"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def private_redis() -> Iterator[str]:
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=20)


@contextmanager
def workers(count: int, environment: dict[str, str], log: Path) -> Iterator[list[str]]:
    """``count`` worker processes on the gpu queue, answering; their node names."""
    from config.celery import app

    names = [f"bench{n}@{socket.gethostname()}" for n in range(1, count + 1)]
    processes = []
    with log.open("ab") as output:
        for name in names:
            command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu"]
            command += ["-P", "solo", "-c", "1", "--prefetch-multiplier", "1", "-n", name]
            command += ["--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
            processes.append(
                subprocess.Popen(
                    command, cwd=REPOSITORY, env=environment, stdout=output, stderr=output
                )
            )
    try:
        deadline = time.monotonic() + 120
        while len(app.control.ping(destination=names, timeout=1.0) or []) < count:
            if time.monotonic() > deadline:
                sys.exit(f"the workers did not start; see {log}")
        yield names
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


@dataclass(frozen=True)
class Result:
    seconds: float  # from queueing the job to its success
    chunk_seconds: float  # the median chunk's, from its start to its examples stored
    hosts: Counter[str]  # chunks per worker


def run_job(count: int, chunk_size: int, steps: int, worker_count: int) -> Result:
    """A fresh job of ``count`` examples run by the workers started."""
    from attacks import services
    from attacks.models import ClassifierModel, GenerationChunk, GenerationJob, JobStatus

    setting = services.create_attack_setting(
        name=f"bench-pgd-{worker_count}-workers",
        attack_name="pgd_linf",
        config={"eps": 0.3, "steps": steps},
        dataset="mnist",
        source_split="test",
        source_range=(0, 10000),
        seed=worker_count,
        target_model=ClassifierModel.objects.get(name="mnist-small-cnn-standard"),
    )
    started = time.monotonic()
    job = services.create_generation_job(setting, count, chunk_size=chunk_size)  # queued
    while job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        time.sleep(0.05)
        job = GenerationJob.objects.get(pk=job.pk)
    seconds = time.monotonic() - started
    positions = list(setting.examples.values_list("position", flat=True))
    if job.status != JobStatus.SUCCEEDED or sorted(positions) != list(range(count)):
        sys.exit(f"job {job.status} with {len(positions)} examples: {job.error}")
    chunks = GenerationChunk.objects.filter(job=job)
    durations = [(c.finished_at - c.started_at).total_seconds() for c in chunks]
    hosts = Counter(chunk.worker_host for chunk in chunks)
    return Result(seconds, statistics.median(durations), hosts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=24)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100, help="PGD steps")
    args = parser.parse_args()
    count = args.chunks * args.chunk_size
    recreate_database(DATABASE_URL)
    media = Path(tempfile.mkdtemp(prefix="advstudy-bench-chunks-"))
    with private_redis() as broker:
        environment = {
            **os.environ,
            "DATABASE_URL": DATABASE_URL,
            "CELERY_BROKER_URL": broker,
            "MEDIA_ROOT": str(media),
            "DEBUG": "1",
            "LOG_LEVEL": "WARNING",
            "OMP_NUM_THREADS": "1",  # one torch thread per worker process
            "MKL_NUM_THREADS": "1",
        }
        os.environ.update(environment)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        call_command("import_zoo", verbosity=0)
        results: dict[int, Result] = {}
        for worker_count in (1, 2):
            with workers(worker_count, environment, media / "workers.log"):
                results[worker_count] = run_job(count, args.chunk_size, args.steps, worker_count)
    print(f"job: {count} examples, {args.chunks} chunks of {args.chunk_size}, PGD-{args.steps}")
    print("workers  wall s  examples/s  speed-up  median chunk s  chunks per worker")
    for worker_count, result in results.items():
        rate, speed_up = count / result.seconds, results[1].seconds / result.seconds
        taken = ", ".join(f"{host.split('@')[0]} {n}" for host, n in sorted(result.hosts.items()))
        print(
            f"{worker_count:>7} {result.seconds:>7.1f} {rate:>11.1f} {speed_up:>9.2f} "
            f"{result.chunk_seconds:>15.2f}  {taken}"
        )
    print("(a median chunk much slower with 2 workers than with 1: the cores were not free)")
    print(f"Command: .venv/bin/python benchmarks/bench_parallel_generation.py (logs: {media})")


if __name__ == "__main__":
    main()
