"""Fault injection: kill and restart the parts a study runs on, and check that nothing is lost.

    .venv/bin/python benchmarks/faults/run_faults.py [--only worker-kill,redis-restart,...]

Not a test: it restarts this machine's PostgreSQL (``pg_ctlcluster``), so it must not run
beside the test suite. It makes its own database (``advstudy_faults``, made afresh on
every run) and its own Redis (a private ``redis-server`` on a free port with an
append-only file, as docker-compose.yml runs Redis), and reports one line per check.

- **worker-kill**: a Celery worker generating a 1,500-example job is killed with SIGKILL
  halfway; a new worker starts. The unacknowledged task comes back (acks_late,
  visibility timeout 60 s here), the job resumes from its stored chunks, and it ends
  with exactly the requested examples, one per position.
- **redis-restart**: annotators label through gunicorn while Redis (the broker and the
  rate limits' cache) is shut down for 3 s and started again. Labelling must go on
  without an error (it needs only PostgreSQL); a job queued before the restart, with no
  worker running, must run when a worker starts afterwards.
- **postgres-restart**: annotators label while PostgreSQL restarts. Requests during the
  outage fail (the page shows the error and asks again, as the client does); the
  web processes must serve again without being restarted, and every item ends with
  exactly k labels, none lost or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

BENCHMARKS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCHMARKS))

from bench_labeling_load import fill_up, free_port, gunicorn  # noqa: E402
from labeling_load.client import ClientConfig, Stats, run_annotators  # noqa: E402
from labeling_load.measures import check_integrity  # noqa: E402
from labeling_load.seeding import (  # noqa: E402
    create_clean_setting,
    create_level_study,
    seed_settings,
    setup_django,
)
from pg_admin import recreate_database  # noqa: E402

if TYPE_CHECKING:
    from study.models import Study

REPOSITORY = BENCHMARKS.parent
DATABASE_URL = "postgres://postgres@127.0.0.1:5432/advstudy_faults"
POSTGRES_RESTART = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"
FAULTS = ("worker-kill", "redis-restart", "postgres-restart")
ANNOTATORS = 12  # labelling through each fault, ITEMS counted items each
ITEMS = 20
SOURCE_RANGE = (0, 9000)  # MNIST test images the fault jobs draw from
Check = tuple[bool, str]


# ---- the services this script runs ----


class PrivateRedis:
    """A redis-server of our own, with an append-only file: restarting it keeps the queue."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="advstudy-faults-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--appendonly", "yes", "--save", "", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for(lambda: self._answers(), 20, "redis-server did not start")

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], check=False)
        if self.process is not None:
            self.process.wait(timeout=20)

    def _answers(self) -> bool:
        ping = ["redis-cli", "-p", str(self.port), "ping"]
        return subprocess.run(ping, capture_output=True, check=False).stdout.strip() == b"PONG"


def wait_for(condition: Callable[[], bool], timeout_s: float, failure: str) -> float:
    """Seconds until ``condition`` held; exits with ``failure`` after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(0.2)
    sys.exit(failure)


def app_environment(redis: PrivateRedis, media: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": redis.url,
        "CACHE_REDIS_URL": redis.url.replace("/0", "/1"),
        "CELERY_VISIBILITY_TIMEOUT": "60",  # the shortest allowed: a lost task returns in a minute
        "MEDIA_ROOT": str(media),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        # The secrets that settings require with DEBUG off (a Fernet key for the ids).
        "ADVSTUDY_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "ADVSTUDY_ID_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_SSL_REDIRECT": "0",
        "ADVSTUDY_JOIN_RATE": "1000000/m",  # every simulated annotator is 127.0.0.1
        "LOG_LEVEL": "WARNING",
    }


@contextmanager
def celery_worker(environment: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu,default"]
    command += ["-P", "solo", "-c", "1", "--prefetch-multiplier", "1", "-n", "faults@%h"]
    command += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    with log.open("ab") as output:
        worker = subprocess.Popen(
            command, cwd=REPOSITORY, env={**os.environ, **environment}, stdout=output, stderr=output
        )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)


@contextmanager
def web_server(environment: dict[str, str], log: Path) -> Iterator[str]:
    options = argparse.Namespace(workers=2, worker_class="gthread", threads=4)
    with gunicorn(options, environment, log) as (base_url, _):
        yield base_url


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# ---- the faults ----


def worker_kill(environment: dict[str, str], log: Path) -> list[Check]:
    from attacks import services
    from attacks.models import Example, GenerationJob, JobStatus

    count = 1500
    setting = create_clean_setting("faults-worker-kill", SOURCE_RANGE, seed=7)
    job = services.create_generation_job(setting, count, chunk_size=25)  # queued on commit
    examples = Example.objects.filter(setting=setting)
    with celery_worker(environment, log) as worker:
        wait_for(lambda: examples.count() >= count // 3, 300, "the first worker made nothing")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    at_kill = examples.count()
    started = time.monotonic()
    with celery_worker(environment, log):
        wait_for(
            lambda: (
                GenerationJob.objects.get(pk=job.pk).status
                in (JobStatus.SUCCEEDED, JobStatus.FAILED)
            ),
            600,
            "the job did not finish after the restart",
        )
    job.refresh_from_db()
    positions = list(examples.values_list("position", flat=True))
    return [
        (0 < at_kill < count, f"worker killed with SIGKILL at {at_kill}/{count} examples"),
        (
            job.status == JobStatus.SUCCEEDED,
            f"job {job.status} {time.monotonic() - started:.0f} s after a new worker started",
        ),
        (len(positions) == count, f"examples stored: {len(positions)} (asked {count})"),
        (
            sorted(positions) == list(range(count)),
            f"positions: {len(set(positions))} distinct, 0..{count - 1} each once",
        ),
    ]


def label_during(
    base_url: str, study: Study, fault: Callable[[], None], at_s: float
) -> tuple[Stats, float]:
    """Annotators label ``study`` while ``fault`` happens ``at_s`` seconds in."""
    from django.db import connections

    config = ClientConfig(base_url=base_url, join_token=study.join_token, think_ms=400.0)
    stats = Stats()
    timer = threading.Timer(at_s, fault)
    timer.start()
    started = time.monotonic()
    asyncio.run(run_annotators(config, ANNOTATORS, 1, stats))
    timer.join()
    seconds = time.monotonic() - started
    # As in the load benchmark: the last free slots can sit on items that everyone with
    # items to go has already labelled; late arrivals fill them, and then every item
    # must have exactly k labels. This process's own connection may predate a restart.
    connections.close_all()
    top_up = fill_up(study, config, argparse.Namespace(items_per_annotator=ITEMS, seed=1))
    stats.acknowledged_keys += top_up.acknowledged_keys
    return stats, seconds


def labelling_checks(study: Study, stats: Stats, seconds: float) -> list[Check]:
    errors = dict(stats.errors)
    summary = [
        (stats.gave_up == 0, f"annotators finished {stats.finished}, gave up {stats.gave_up}")
    ]
    summary.append((True, f"labelling took {seconds:.0f} s; client errors: {errors or 'none'}"))
    return summary + check_integrity(study, stats.acknowledged_keys, complete=True)


def redis_restart(
    environment: dict[str, str], log: Path, redis: PrivateRedis, study: Study
) -> list[Check]:
    from attacks import services
    from attacks.models import GenerationJob, JobStatus

    setting = create_clean_setting("faults-queued-before-restart", SOURCE_RANGE, seed=8)
    job = services.create_generation_job(setting, 40)  # queued; no worker runs yet

    def restart() -> None:
        redis.stop()
        time.sleep(3)
        redis.start()

    with web_server(environment, log) as base_url:
        stats, seconds = label_during(base_url, study, restart, at_s=4)
    checks = [(not stats.errors, "no request failed while Redis was down and restarting")]
    checks += labelling_checks(study, stats, seconds)
    with celery_worker(environment, log):
        waited = wait_for(
            lambda: GenerationJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED,
            300,
            "the job queued before the restart never ran",
        )
    checks.append(
        (True, f"job queued before the restart ran {waited:.0f} s after a worker started")
    )
    return checks


def postgres_restart(environment: dict[str, str], log: Path, study: Study) -> list[Check]:
    from django.db import connections

    recovered: list[float] = []

    def restart() -> None:
        subprocess.run(POSTGRES_RESTART, shell=True, check=True, capture_output=True)
        recovered.append(wait_for(lambda: healthy(base_url), 60, "the web never recovered"))

    with web_server(environment, log) as base_url:
        stats, seconds = label_during(base_url, study, restart, at_s=4)
        served_after = healthy(base_url)
    connections.close_all()  # this process's connection died with the server
    checks = [
        (bool(recovered), f"web processes served again {recovered[0]:.1f} s after the restart"),
        (served_after, "still serving at the end, never restarted by hand"),
    ]
    return checks + labelling_checks(study, stats, seconds)


# ---- running them ----


def new_study(seed: Any, title: str) -> Study:
    options = argparse.Namespace(labels_per_item=2, attention_checks=1, practice=1)
    return create_level_study(seed, title, ANNOTATORS * ITEMS // 2, ITEMS, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(FAULTS), help="comma-separated faults")
    chosen = [name for name in parser.parse_args().only.split(",") if name]
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        sys.exit(f"unknown faults {sorted(unknown)}; choose from {', '.join(FAULTS)}")
    if not shutil.which("redis-server"):
        sys.exit("redis-server is needed")
    redis = PrivateRedis()
    redis.start()
    media = Path(tempfile.mkdtemp(prefix="advstudy-faults-media-"))
    log = media.parent / "advstudy-faults.log"
    environment = app_environment(redis, media)
    recreate_database(DATABASE_URL)
    setup_django(environment)
    os.environ["CELERY_BROKER_URL"] = redis.url  # this process queues jobs like the web does
    from config.celery import app

    app.conf.update(broker_url=redis.url, task_always_eager=False)
    seed = seed_settings(12 * 20 // 2, argparse.Namespace(practice=1))
    failed = False
    try:
        for name in chosen:
            print(f"\n{name}:", flush=True)
            if name == "worker-kill":
                checks = worker_kill(environment, log)
            elif name == "redis-restart":
                checks = redis_restart(environment, log, redis, new_study(seed, "faults redis"))
            else:
                checks = postgres_restart(environment, log, new_study(seed, "faults postgres"))
            for ok, line in checks:
                failed |= not ok
                print(f"- {'ok' if ok else 'FAILED'}: {line}", flush=True)
    finally:
        redis.stop()
    print(f"\nlogs: {log}\nCommand: .venv/bin/python benchmarks/faults/run_faults.py")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
