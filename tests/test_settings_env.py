"""Settings come only from the environment, and a bad value stops the process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import ImproperEnvironment, env_bool, env_int

REPOSITORY = Path(__file__).resolve().parent.parent
SHOW_SETTINGS = (
    "from config import settings; "
    "print(settings.DATABASES['default']['ENGINE'], settings.CELERY_TASK_ALWAYS_EAGER)"
)


def load_settings(**environment: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DEBUG",
            "SECRET_KEY",
            "ADVSTUDY_PSEUDONYM_KEY",
            "ADVSTUDY_ID_KEY",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
        }
    }
    return subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        cwd=REPOSITORY,
        env={**clean, **environment},
        capture_output=True,
        text=True,
        check=False,
    )


def test_secret_key_is_required_when_debug_is_off() -> None:
    result = load_settings(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


PRODUCTION_KEYS = {
    "SECRET_KEY": "x" * 50,
    "ADVSTUDY_PSEUDONYM_KEY": "p" * 50,
    "ADVSTUDY_ID_KEY": "aW5zZWN1cmUtZGV2ZWxvcG1lbnQtaWQta2V5LS0tLS0=",
}


@pytest.mark.parametrize("missing", ["ADVSTUDY_PSEUDONYM_KEY", "ADVSTUDY_ID_KEY"])
def test_the_pseudonym_and_id_keys_are_required_when_debug_is_off(missing: str) -> None:
    keys = {name: value for name, value in PRODUCTION_KEYS.items() if name != missing}
    result = load_settings(DEBUG="0", **keys)
    assert result.returncode != 0
    assert f"{missing} must be set" in result.stderr


def test_an_id_key_that_is_not_a_fernet_key_fails_loudly() -> None:
    result = load_settings(DEBUG="0", **{**PRODUCTION_KEYS, "ADVSTUDY_ID_KEY": "not-a-key"})
    assert result.returncode != 0
    assert "ADVSTUDY_ID_KEY holds something that is not a Fernet key" in result.stderr


def test_defaults_are_sqlite_and_in_process_tasks() -> None:
    result = load_settings(DEBUG="1")
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True"]


def test_a_broker_url_turns_eager_tasks_off() -> None:
    result = load_settings(
        **PRODUCTION_KEYS,
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/advstudy",
    )
    assert result.stdout.split() == ["django.db.backends.postgresql", "False"]


@pytest.mark.parametrize("raw", ["ture", "2", "enabled"])
def test_a_mistyped_boolean_fails_loudly(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("SOME_FLAG", raw)
    with pytest.raises(ImproperEnvironment, match="SOME_FLAG"):
        env_bool("SOME_FLAG", False)


def test_an_integer_below_its_minimum_fails_loudly(monkeypatch) -> None:
    monkeypatch.setenv("SOME_NUMBER", "0")
    with pytest.raises(ImproperEnvironment, match="at least 1"):
        env_int("SOME_NUMBER", 5, minimum=1)


@pytest.mark.parametrize("package", ["attacks/engine", "study/adaptive"])
def test_the_pure_packages_never_import_django(package: str) -> None:
    modules = [
        path.relative_to(REPOSITORY).with_suffix("").as_posix().replace("/", ".")
        for path in (REPOSITORY / package).rglob("*.py")
    ]
    code = "import sys\n" + "".join(f"import {name}\n" for name in modules)
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_production_settings_pass_the_deployment_checklist() -> None:
    # DJANGO_ALLOW_ASYNC_UNSAFE: the browser tests set it for Playwright, never a deployment.
    dropped = {"DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPOSITORY,
        env={
            **clean,
            **PRODUCTION_KEYS,
            "DEBUG": "0",
            "SECRET_KEY": "k" * 20 + "-Zq9" + "x7Y" * 12,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_health_check_answers_over_plain_http_in_production(
    client, settings, transactional_db
) -> None:
    settings.DEBUG = False
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

    page = client.get("/healthz")
    login = client.get("/accounts/login/")

    assert page.status_code == 200
    assert page.json() == {"database": "ok"}
    assert login.status_code == 301  # everything else goes to HTTPS
    assert login["Location"].startswith("https://")


def test_the_annotator_script_is_served_by_the_web_process_itself(settings, db) -> None:
    settings.DEBUG = False  # as in production: Django's own static view is off
    from django.test import Client

    response = Client().get("/static/labeling/annotator.js", HTTP_ACCEPT_ENCODING="gzip")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert b"performance.now()" in response.getvalue()


def test_database_url_options_are_kept_beside_the_prepared_statements_plan_mode() -> None:
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from config import settings; print(settings.DATABASES['default']['OPTIONS'])",
        ],
        cwd=REPOSITORY,
        env={
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            "DATABASE_URL": "postgres://u@h:5432/d?options=-c%20statement_timeout%3D5000",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert "-c statement_timeout=5000 -c plan_cache_mode=force_generic_plan" in shown.stdout


def _arrow_pool(*, with_settings: bool) -> str:
    settings = "from config import settings; " if with_settings else ""
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{settings}import pyarrow as pa; print(pa.default_memory_pool().backend_name)",
        ],
        cwd=REPOSITORY,
        env={**clean, "DEBUG": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_arrow_allocates_from_jemalloc_in_all_its_parts() -> None:
    # The C++ default pool (the Parquet writer's internals use it), not only pyarrow's;
    # jemalloc is in pyarrow's Linux wheels, elsewhere the wheel's default stays.
    expected = "jemalloc" if sys.platform == "linux" else _arrow_pool(with_settings=False)
    assert _arrow_pool(with_settings=True) == expected


SHOW_STORAGE = (
    "import django; django.setup(); from django.core.files.storage import storages; "
    "s = storages['default']; "
    "print(type(s).__name__, getattr(s, 'bucket_name', '-'), getattr(s, 'endpoint_url', '-'), "
    "getattr(s, 'max_memory_size', '-'))"
)


def load_storage(**environment: str) -> subprocess.CompletedProcess[str]:
    dropped = {"ADVSTUDY_STORAGE", "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL"}
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run(
        [sys.executable, "-c", SHOW_STORAGE],
        cwd=REPOSITORY,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "1", **environment},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("environment", "shown"),
    [
        ({}, ["FileSystemStorage", "-", "-"]),
        ({"ADVSTUDY_STORAGE": "local", "AWS_STORAGE_BUCKET_NAME": "lab"}, ["FileSystemStorage"]),
        (
            {"ADVSTUDY_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": "lab"},
            ["S3Storage", "lab", "None"],
        ),
        (
            {"AWS_STORAGE_BUCKET_NAME": "lab", "AWS_S3_ENDPOINT_URL": "http://minio:9000"},
            ["S3Storage", "lab", "http://minio:9000"],
        ),
    ],
)
def test_the_environment_switches_the_image_storage_to_s3(
    environment: dict[str, str], shown: list[str]
) -> None:
    result = load_storage(**environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[: len(shown)] == shown


def test_s3_reads_spool_to_disk_past_16_mib() -> None:
    # Unset, django-storages holds a whole downloaded file (a dataset's zip, up to 1 GB) in memory.
    result = load_storage(ADVSTUDY_STORAGE="s3", AWS_STORAGE_BUCKET_NAME="lab")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[3] == str(16 * 1024 * 1024)


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"ADVSTUDY_STORAGE": "s3"}, "AWS_STORAGE_BUCKET_NAME must be set"),
        ({"ADVSTUDY_STORAGE": "gcs"}, "ADVSTUDY_STORAGE='gcs' is not one of: local, s3"),
    ],
)
def test_a_storage_without_its_bucket_or_of_an_unknown_kind_fails_loudly(
    environment: dict[str, str], message: str
) -> None:
    result = load_storage(**environment)
    assert result.returncode != 0
    assert message in result.stderr
