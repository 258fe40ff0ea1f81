"""docker-compose.yml validates and declares what a deployment needs.

Validated with `docker-compose config` (Debian's docker-compose; ./run test installs
it): the same file `docker compose up` reads, with its variables resolved.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parent.parent
SERVICES = {"migrate", "web", "worker-gpu", "worker-cpu", "postgres", "redis"}
SECRETS = {
    "SECRET_KEY": "s" * 50,
    "ADVSTUDY_PSEUDONYM_KEY": "p" * 50,
    "ADVSTUDY_ID_KEY": "aW5zZWN1cmUtZGV2ZWxvcG1lbnQtaWQta2V5LS0tLS0=",
}


def compose_config(*files: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` of docker-compose.yml and ``files``; of the defaults if "-"."""
    names = [] if files == ("-",) else ["docker-compose.yml", *files]
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail("docker-compose is not installed: `apt-get install docker-compose`")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [executable, *(f"-f{name}" for name in names), "config"],
        cwd=REPOSITORY,
        env={**clean, **environment},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_compose_file_validates_and_declares_every_service() -> None:
    result = compose_config(**SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]

    assert set(services) == SERVICES
    for name in SERVICES - {"migrate"}:
        assert "healthcheck" in services[name], name
    for name in ("web", "worker-gpu", "worker-cpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    gpu = services["worker-gpu"]
    assert {"-Q", "gpu", "-P", "solo"} <= set(gpu["command"])
    # No device reservation in the base file: it comes up on a host without a GPU.
    assert "deploy" not in gpu
    assert {"-Q", "default"} <= set(services["worker-cpu"]["command"])
    assert "gunicorn" in services["web"]["command"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_the_gpu_override_reserves_an_nvidia_device_for_the_gpu_worker_only() -> None:
    result = compose_config("docker-compose.gpu.yml", **SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]

    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert {"-Q", "gpu", "-P", "solo"} <= set(services["worker-gpu"]["command"])
    assert all("deploy" not in services[name] for name in SERVICES - {"worker-gpu"})


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_the_compose_file_refuses_to_start_without_a_secret_key(missing: str) -> None:
    result = compose_config(**{name: value for name, value in SECRETS.items() if name != missing})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_compose_up_with_no_file_named_publishes_the_web_port() -> None:
    result = compose_config("-", **SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == SERVICES
    assert services["web"]["ports"] == [{"published": 8000, "target": 8000}]


def test_the_local_override_replaces_images_and_keeps_every_service_on_the_host() -> None:
    result = compose_config("docker-compose.local.yml", **SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]

    assert set(services) == SERVICES
    assert all(service["network_mode"] == "host" for service in services.values())
    assert all("ports" not in service for service in services.values())
    assert services["postgres"]["image"].startswith("advstudy-local/")
    assert services["redis"]["image"].startswith("advstudy-local/")
    for name in ("migrate", "web", "worker-gpu", "worker-cpu"):
        assert services[name]["build"]["args"]["BASE_IMAGE"] == "advstudy-local/python:3.11"
        assert "127.0.0.1" in services[name]["environment"]["DATABASE_URL"]
    # The commands, health checks and dependencies are docker-compose.yml's own.
    assert services["web"]["command"] == compose_services()["web"]["command"]
    assert services["web"]["depends_on"] == compose_services()["web"]["depends_on"]


def test_the_image_records_the_code_version_it_was_built_from() -> None:
    result = compose_config(ADVSTUDY_CODE_VERSION="v9-1-gabcdef0", **SECRETS)
    services = yaml.safe_load(result.stdout)["services"]
    assert services["worker-gpu"]["build"]["args"]["ADVSTUDY_CODE_VERSION"] == "v9-1-gabcdef0"
    dockerfile = (REPOSITORY / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in dockerfile
    assert "ENV ADVSTUDY_CODE_VERSION=${ADVSTUDY_CODE_VERSION}" in dockerfile


def compose_services() -> dict[str, dict[str, object]]:
    result = compose_config(**SECRETS)
    assert result.returncode == 0, result.stderr
    services: dict[str, dict[str, object]] = yaml.safe_load(result.stdout)["services"]
    return services
