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
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail("docker-compose is not installed: `apt-get install docker-compose`")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [executable, *(f"-f{name}" for name in ("docker-compose.yml", *files)), "config"],
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
