"""Bring the real docker-compose.yml up on this machine and drive it as a lab would.

    .venv/bin/python benchmarks/compose_smoke.py [--images local|official] [--keep]

Each step is timed and printed as it ends; any failed check stops the run (exit 1)
after the teardown:

1. a Docker engine: the one DOCKER_HOST (or the default socket) names, else a dockerd of
   its own (--iptables=false --ip-masq=false --bridge=none, its data, exec root, pid file
   and socket under --state-dir), stopped at the end;
2. with ``--images local`` (the default: this VM reaches no image registry) the stand-ins
   of docker-compose.local.yml: a Debian bookworm root filesystem from debootstrap
   (cached in --state-dir), imported as an image, then Python 3.11, PostgreSQL and Redis
   from Debian's packages (deploy/local/); ``--images official`` pulls the official ones;
3. the application image, built with the code version (`git describe`) as a build argument;
4. up, every health check waited for; migrations ran on start (`migrate --check`);
5. a researcher and an API token; the model zoo imported; a PGD setting and a generation job
   through the API, finished by the gpu worker (CPU fallback) with the image's code version;
6. a study of those examples, live; simulated annotators label it through the web
   (benchmarks/labeling_load/client.py, the page's own requests); progress says complete;
7. the annotations CSV and the HF zip exported through the API, one row and one image each;
8. a second job; the gpu worker's container killed with SIGKILL mid-job and started again;
   the job finishes (the lost chunk returns after the broker's visibility timeout, 60 s
   here) with exactly the examples asked for;
9. down with its volumes; the engine stopped if this script started it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labeling_load.client import ClientConfig, Stats, run_annotators

REPOSITORY = Path(__file__).resolve().parent.parent
PROJECT = "advstudy-smoke"
BASE_URL = "http://127.0.0.1:8000"
HEALTHY_SERVICES = ("postgres", "redis", "web", "worker-gpu", "worker-cpu")
# docker-compose.local.yml's host ports: they must be free on this machine.
LOCAL_PORTS = {8000: "web", 55432: "postgres", 56379: "redis"}
STAND_INS = {
    "advstudy-local/python:3.11": "python.Dockerfile",
    "advstudy-local/postgres:15": "postgres.Dockerfile",
    "advstudy-local/redis:7": "redis.Dockerfile",
}
RESEARCHER = "smoke"


class SmokeFailure(Exception):
    """A check that did not hold: the run stops, tears down and exits 1."""


def check(condition: bool, sentence: str) -> None:
    if not condition:
        raise SmokeFailure(sentence)
    print(f"    ok: {sentence}", flush=True)


class Steps:
    """Times each step and prints it as it ends."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"--> {name}", flush=True)
        began = time.monotonic()
        yield
        took = time.monotonic() - began
        self.timings.append((name, took))
        print(f"    {took:.1f} s", flush=True)

    def summary(self) -> str:
        lines = [f"{took:8.1f} s  {name}" for name, took in self.timings]
        lines.append(f"{time.monotonic() - self.start:8.1f} s  in all")
        return "\n".join(lines)


def run(
    command: list[str], env: dict[str, str], **options: Any
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, env=env, text=True, capture_output=True, **options)
    if result.returncode != 0:
        raise SmokeFailure(
            f"`{' '.join(command)}` failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        )
    return result


def wait_for(condition: Callable[[], bool], timeout_s: float, failure: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if condition():
            return time.monotonic() - began
        time.sleep(1)
    raise SmokeFailure(failure)


# ---- the engine ----


def engine_answers(env: dict[str, str]) -> bool:
    return subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0


@contextmanager
def docker_engine(state: Path, keep: bool) -> Iterator[dict[str, str]]:
    """The environment that reaches a Docker engine: a running one, else one started here."""
    env = dict(os.environ)
    if engine_answers(env):
        print("    a Docker engine already answers: using it (and leaving it running)")
        yield env
        return
    socket_path = state / "docker.sock"
    env["DOCKER_HOST"] = f"unix://{socket_path}"
    pidfile = state / "dockerd.pid"
    with (state / "dockerd.log").open("ab") as log:
        engine = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none",
             "--data-root", str(state / "data"), "--exec-root", str(state / "exec"),
             "--pidfile", str(pidfile), "-H", env["DOCKER_HOST"]],
            stdout=log, stderr=log,
        )  # fmt: skip
    try:
        wait_for(
            lambda: engine_answers(env), 60, f"dockerd did not answer; see {state}/dockerd.log"
        )
        print(f"    started dockerd (pid {engine.pid}) on {socket_path}")
        yield env
    finally:
        if keep:
            print(f"    left dockerd running (pid {engine.pid}): DOCKER_HOST={env['DOCKER_HOST']}")
        else:
            engine.send_signal(signal.SIGTERM)
            engine.wait(timeout=60)
            # dockerd leaves its network namespace mounted, which would keep --state-dir busy.
            subprocess.run(
                ["umount", str(state / "exec" / "netns" / "default")], capture_output=True
            )
            print(f"    stopped the dockerd this script started (pid {engine.pid})")


# ---- images ----


def image_exists(name: str, env: dict[str, str]) -> bool:
    inspect = ["docker", "image", "inspect", name]
    return subprocess.run(inspect, env=env, capture_output=True).returncode == 0


def build_stand_ins(state: Path, env: dict[str, str]) -> None:
    """The official images' stand-ins, from a debootstrapped Debian bookworm."""
    if not image_exists("advstudy-local/bookworm", env):
        rootfs = state / "rootfs"
        if not (rootfs / "etc" / "debian_version").exists():
            shutil.rmtree(rootfs, ignore_errors=True)
            print("    debootstrap bookworm (minbase) ...", flush=True)
            run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs),
                 "http://deb.debian.org/debian"], env)  # fmt: skip
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(["docker", "import", "-", "advstudy-local/bookworm"], env, stdin=tar.stdout)
        tar.wait()
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(REPOSITORY / "deploy" / "local", context, dirs_exist_ok=True)
        authorities = Path(context) / "ca-certificates"
        authorities.mkdir()
        for certificate in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(certificate, authorities)
        for image, dockerfile in STAND_INS.items():
            run(["docker", "build", "--network", "host", "-q", "-t", image,
                 "-f", str(Path(context) / dockerfile), context], env)  # fmt: skip
            print(f"    built {image}", flush=True)


class Compose:
    def __init__(self, env: dict[str, str], local: bool) -> None:
        override = "docker-compose.local.yml" if local else "docker-compose.override.yml"
        files = ["docker-compose.yml", override]
        self.command = ["docker-compose", "-p", PROJECT, *(f"-f{name}" for name in files)]
        self.env = env

    def __call__(self, *arguments: str, **options: Any) -> subprocess.CompletedProcess[str]:
        return run([*self.command, *arguments], self.env, cwd=REPOSITORY, **options)

    def container(self, service: str) -> str:
        return self("ps", "-q", service).stdout.strip()

    def inspect(self, service: str, template: str) -> str:
        container = self.container(service)
        if not container:
            return ""
        return run(["docker", "inspect", "-f", template, container], self.env).stdout.strip()

    def logs(self) -> str:
        """The last lines of every service, for a failure's report."""
        command = [*self.command, "logs", "--no-color", "--tail=30"]
        result = subprocess.run(
            command, env=self.env, cwd=REPOSITORY, text=True, capture_output=True
        )
        return result.stdout + result.stderr

    def manage(self, *arguments: str, env: dict[str, str] | None = None) -> str:
        extra = [f"-e{name}={value}" for name, value in (env or {}).items()]
        return self("exec", "-T", *extra, "web", "python", "manage.py", *arguments).stdout


def compose_environment(env: dict[str, str]) -> dict[str, str]:
    describe = ["git", "describe", "--always", "--dirty"]
    version = subprocess.run(describe, cwd=REPOSITORY, capture_output=True, text=True).stdout
    return {
        **env,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ADVSTUDY_PSEUDONYM_KEY": secrets.token_urlsafe(50),
        "ADVSTUDY_ID_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "ADVSTUDY_CODE_VERSION": version.strip(),
        # The shortest the settings allow: a killed worker's chunk returns within a minute.
        "CELERY_VISIBILITY_TIMEOUT": "60",
    }


# ---- the API ----


class Api:
    def __init__(self, token: str) -> None:
        self.headers = {"Authorization": f"Token {token}"}

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        headers = {**self.headers, **({"Content-Type": "application/json"} if data else {})}
        url = f"{BASE_URL}/api/v1/{path}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            raise SmokeFailure(f"{method} {url}: {error.code} {error.read()[:500]!r}") from error

    def get(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return json.loads(self.request("POST", path, body or {}))


def finished_job(api: Api, job_id: int, timeout_s: float) -> dict[str, Any]:
    last = {"status": "", "done": -1}

    def finished() -> bool:
        job = api.get(f"jobs/{job_id}/")
        if (job["status"], job["done"]) != (last["status"], last["done"]):
            print(f"    job {job_id}: {job['status']} {job['done']}/{job['count']}", flush=True)
        last.update(job)
        return job["status"] in ("succeeded", "failed", "cancelled")

    wait_for(finished, timeout_s, f"job {job_id} did not finish in {timeout_s:.0f} s")
    return last


# ---- the steps ----


def bring_up(compose: Compose) -> None:
    compose("up", "-d")

    def all_healthy() -> bool:
        states = {
            name: compose.inspect(name, "{{.State.Health.Status}}") for name in HEALTHY_SERVICES
        }
        return all(state == "healthy" for state in states.values())

    waited = wait_for(all_healthy, 300, "not every service became healthy in 300 s")
    check(True, f"{', '.join(HEALTHY_SERVICES)} healthy ({waited:.0f} s after `up`)")
    exit_code = compose.inspect("migrate", "{{.State.ExitCode}}")
    check(exit_code == "0", f"the migrate service ran on start and exited {exit_code}")
    compose.manage("migrate", "--check")
    check(True, "`migrate --check`: no migration left unapplied")


def researcher_token(compose: Compose) -> Api:
    password = secrets.token_urlsafe(16)
    compose.manage(
        "createsuperuser", "--noinput", f"--username={RESEARCHER}", "--email=smoke@localhost",
        env={"DJANGO_SUPERUSER_PASSWORD": password},
    )  # fmt: skip
    token = compose.manage("api_token", RESEARCHER).strip().splitlines()[-1]
    return Api(token)


def generate(compose: Compose, api: Api, version: str) -> dict[str, Any]:
    compose.manage("import_zoo")
    models = api.get("models/")["results"]
    model = next(model for model in models if model["dataset"] == "mnist")
    setting = api.post("attack-settings/", {
        "name": "smoke-pgd-linf-0.3", "attack_name": "pgd_linf",
        "config": {"eps": 0.3, "steps": 40}, "target_model": model["id"],
        "dataset": "mnist", "source_split": "test", "source_stop": 10000,
    })  # fmt: skip
    job = api.post("jobs/", {"setting": setting["id"], "count": 60, "chunk_size": 20})
    job = finished_job(api, job["id"], 600)
    check(
        job["status"] == "succeeded",
        f"job {job['id']} {job['status']}: {job['done']}/60 on {job['device']}",
    )
    check(
        job["code_version"] == version,
        f"the job records the image's code version {job['code_version']!r}",
    )
    return dict(api.get(f"attack-settings/{setting['id']}/"))


def label_through_the_web(api: Api, setting: dict[str, Any], annotators: int) -> int:
    items = 10 * annotators
    study = api.post("studies/", {
        "title": "Smoke: which digit?", "instructions": "Which digit do you see?",
        "consent_text": "A smoke test of the deployment.",
        "samples": [{"setting": setting["id"], "count": items}],
        "items_per_participant": 10, "labels_per_item": 1, "min_response_ms": 0,
    })  # fmt: skip
    api.post(f"studies/{study['id']}/open/")
    token = study["join_url"].rstrip("/").split("/")[-1]
    stats = Stats()
    config = ClientConfig(base_url=BASE_URL, join_token=token, think_ms=300.0)
    asyncio.run(run_annotators(config, annotators, seed=0, stats=stats))
    check(
        stats.error_count() == 0,
        f"{annotators} annotators, {stats.labels} labels, errors: {dict(stats.errors)}",
    )
    check(stats.labels == items, f"{stats.labels} labels stored for {items} items (k = 1)")
    progress = api.get(f"studies/{study['id']}/progress/")
    print(f"    progress: {json.dumps(progress)[:300]}")
    return int(study["id"])


def export(api: Api, study_id: int, labels: int) -> None:
    annotations = api.request("GET", f"studies/{study_id}/exports/annotations.csv").decode()
    rows = list(csv.DictReader(io.StringIO(annotations)))
    check(len(rows) == labels, f"annotations.csv: {len(rows)} rows ({len(annotations):,} bytes)")
    archive = zipfile.ZipFile(
        io.BytesIO(api.request("GET", f"studies/{study_id}/exports/examples.hf"))
    )
    images = [name for name in archive.namelist() if name.endswith(".png")]
    check(
        len(images) == labels,
        f"examples.hf: {len(images)} images in a zip of {len(archive.namelist())} files",
    )


def kill_the_worker_mid_job(
    compose: Compose, api: Api, setting: dict[str, Any], count: int
) -> None:
    before = api.get(f"attack-settings/{setting['id']}/")["examples"]
    job = api.post("jobs/", {"setting": setting["id"], "count": count, "chunk_size": 20})
    wait_for(lambda: api.get(f"jobs/{job['id']}/")["done"] >= count // 4, 600,
             "the gpu worker made no progress on the second job")  # fmt: skip
    container = compose.container("worker-gpu")
    run(["docker", "kill", "--signal", "KILL", container], compose.env)
    at_kill = api.get(f"jobs/{job['id']}/")
    check(at_kill["status"] == "running" and at_kill["done"] < count,
          f"worker-gpu killed with SIGKILL at {at_kill['done']}/{count}")  # fmt: skip
    restarted = time.monotonic()
    compose("start", "worker-gpu")
    finished = finished_job(api, job["id"], 900)
    took = time.monotonic() - restarted
    check(
        finished["status"] == "succeeded",
        f"job {job['id']} {finished['status']} {took:.0f} s after the restart",
    )
    after = api.get(f"attack-settings/{setting['id']}/")["examples"]
    check(
        after - before == count,
        f"{after - before} examples stored for {count} asked (no loss, no duplicate)",
    )


def ports_free() -> None:
    for port, service in LOCAL_PORTS.items():
        with socket.socket() as probe:
            taken = probe.connect_ex(("127.0.0.1", port)) == 0
        check(not taken, f"port {port} ({service}) is free on 127.0.0.1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", choices=["local", "official"], default="local")
    parser.add_argument("--state-dir", type=Path, default=Path("/var/tmp/advstudy-compose"),
                        help="the engine's data, the cached root filesystem")  # fmt: skip
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--kill-job-count", type=int, default=600)
    parser.add_argument("--keep", action="store_true", help="leave the stack up (and the engine)")
    args = parser.parse_args()
    args.state_dir.mkdir(parents=True, exist_ok=True)
    steps = Steps()
    failed: SmokeFailure | None = None
    with docker_engine(args.state_dir, args.keep) as env:
        compose = Compose(compose_environment(env), local=args.images == "local")
        try:
            if args.images == "local":
                ports_free()
                with steps.step(
                    "stand-in images (debootstrap, Debian's Python, PostgreSQL, Redis)"
                ):
                    build_stand_ins(args.state_dir, env)
            with steps.step("application image (docker-compose build)"):
                if args.images == "official":
                    compose("pull", "postgres", "redis")
                compose("build")
            with steps.step("up, healthy, migrations ran"):
                bring_up(compose)
            with steps.step("researcher, zoo, a PGD setting and a job through the API"):
                api = researcher_token(compose)
                setting = generate(compose, api, compose.env["ADVSTUDY_CODE_VERSION"])
            with steps.step("a study labelled through the web"):
                study_id = label_through_the_web(api, setting, args.annotators)
            with steps.step("exports"):
                export(api, study_id, 10 * args.annotators)
            with steps.step("worker killed mid-job, restarted, job finished"):
                kill_the_worker_mid_job(compose, api, setting, args.kill_job_count)
        except SmokeFailure as failure:
            failed = failure
            print(f"FAILED: {failure}\n{compose.logs()}", flush=True)
        finally:
            if not args.keep:
                with steps.step("down, volumes removed"):
                    compose("down", "--volumes", "--remove-orphans")
    print("\n" + steps.summary())
    if failed is not None:
        sys.exit(1)


if __name__ == "__main__":
    main()
