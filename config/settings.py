"""Django settings, read only from environment variables (see .env.example)."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config import demo_broker
from config.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_required,
    env_secret,
    env_str,
    fernet_keys,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
if DEBUG:
    SECRET_KEY = env_str("SECRET_KEY") or "insecure-development-key-do-not-use-in-production"
else:
    SECRET_KEY = env_required("SECRET_KEY", reason="it signs sessions when DEBUG is off")
# Participants' pseudonyms and the HMAC that recognises a returning recruiter id are keyed by
# their own secret, so that rotating SECRET_KEY changes neither. Set it once; never change it.
ADVSTUDY_PSEUDONYM_KEY = env_secret(
    "ADVSTUDY_PSEUDONYM_KEY",
    required=not DEBUG,
    development_value="insecure-development-pseudonym-key",
    reason="it keys participants' pseudonyms and recruiter ids' HMAC when DEBUG is off",
)
# Recruiter ids (Prolific, MTurk) are stored encrypted with this Fernet key, for the owner's
# payment files; comma-separated keys rotate (the first encrypts, every one decrypts).
ADVSTUDY_ID_KEYS = fernet_keys(
    "ADVSTUDY_ID_KEY",
    env_secret(
        "ADVSTUDY_ID_KEY",
        required=not DEBUG,
        development_value="aW5zZWN1cmUtZGV2ZWxvcG1lbnQtaWQta2V5LS0tLS0=",
        reason="it encrypts participants' recruiter ids when DEBUG is off",
    ),
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_ratelimit",
    "axes",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "attacks",
    "study",
    "labeling",
    "analysis",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Near the top: it sees every researcher page's response last, redirects and errors too.
    "config.researcher_headers.ResearcherHeadersMiddleware",
    # Static files (the annotator's script and styles) from gunicorn itself: no separate
    # web server is needed, and they go out compressed with long cache headers.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.outage.DatabaseOutageMiddleware",
    # Last, as django-axes asks: it turns a locked sign-in into config.accounts.locked_out.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Default: a SQLite file, so that the demo needs no server. Tests and
# production set DATABASE_URL to PostgreSQL.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Plan the labelling loop's prepared statements once per connection and keep the
    # plan (labeling/services/statements.py: planning cost more than running them).
    # Only prepared statements are affected, and Django itself prepares none.
    # Added to any options that DATABASE_URL gives (?options=-c ...), not instead of them.
    database_options = DATABASES["default"].setdefault("OPTIONS", {})
    database_options["options"] = (
        f"{database_options.get('options', '')} -c plan_cache_mode=force_generic_plan".strip()
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the demo's pages read while a task writes; wait rather than fail on a lock.
    # IMMEDIATE: a transaction takes the one write lock when it begins (it waits there), so
    # two annotators' transactions never both read and then fail to upgrade to writing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "researcher-home"
LOGOUT_REDIRECT_URL = "login"
# Mail, for password reset only: without EMAIL_HOST its pages answer 404 and the sign-in
# page offers no link (config/accounts.py).
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "advstudy@localhost")

# Sign-in throttling (django-axes): LOGIN_FAILURE_LIMIT wrong passwords for one user name
# from one address lock that pair for LOGIN_LOCKOUT_MINUTES; other users and addresses
# sign in as usual. Counted in the database, which SQLite and PostgreSQL both serve and
# every web process shares; a success clears the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.accounts.locked_out"
AXES_CLIENT_IP_CALLABLE = "config.accounts.login_client_address"
# Its banner otherwise opens the output of every manage.py command, `demo --help` too.
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Times on pages carry their zone ("2026-12-07 14:05 UTC"): config/formats/en/formats.py.
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Example images and weights: the local MEDIA_ROOT, or S3-compatible object storage that
# GPU workers and web processes on several hosts share (docs/operations.md). Every read
# and write goes through the storage API, never a path.
ADVSTUDY_STORAGE = env_choice(
    "ADVSTUDY_STORAGE", "s3" if env_str("AWS_STORAGE_BUCKET_NAME") else "local", ("local", "s3")
)
_FILE_STORAGE: dict[str, Any]
if ADVSTUDY_STORAGE == "s3":
    _FILE_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_required(
                "AWS_STORAGE_BUCKET_NAME", reason="ADVSTUDY_STORAGE=s3 stores the images there"
            ),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "location": env_str("AWS_LOCATION", ""),
            # Images are never served from the bucket (docs/architecture.md, rule 2).
            "default_acl": "private",
            # A file read through the storage API is downloaded into a SpooledTemporaryFile,
            # which django-storages keeps wholly in memory unless this is set: a dataset
            # import job reads a zip of up to ADVSTUDY_MAX_DATASET_BYTES that way.
            "max_memory_size": 16 * 1024 * 1024,
            # Credentials: boto3's own chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
            # a profile, or the host's role).
        },
    }
else:
    _FILE_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _FILE_STORAGE,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders (no collectstatic) in development; the
# Docker image runs collectstatic, so production reads STATIC_ROOT.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", DEBUG)
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or BASE_DIR / "media")
# Example images are never served from MEDIA_URL: annotators get them through
# an opaque, per-participant view (docs/architecture.md, rule 2), researchers through a
# login-protected one.
MEDIA_URL = "/media-not-served/"

# Where the engine finds IDX dataset files offline; unset, it uses the sample
# that ships inside the project (the MNIST test set).
ADVSTUDY_DATA_DIR = env_str("ADVSTUDY_DATA_DIR") or None
ADVSTUDY_DOWNLOAD_DATASETS = env_bool("ADVSTUDY_DOWNLOAD_DATASETS", False)
# The largest model file a researcher may register (bytes); a larger one is refused before
# it is read. Registration measures clean accuracy on at most this many test images, and
# stops measuring after this many seconds (the accuracy is then over the images measured).
ADVSTUDY_MAX_MODEL_BYTES = env_int("ADVSTUDY_MAX_MODEL_BYTES", 500 * 1000 * 1000, minimum=1)
ADVSTUDY_MODEL_CHECK_IMAGES = env_int("ADVSTUDY_MODEL_CHECK_IMAGES", 1000, minimum=1)
ADVSTUDY_MODEL_CHECK_SECONDS = env_int("ADVSTUDY_MODEL_CHECK_SECONDS", 30, minimum=1)
# Minutes an annotator holds a claimed item before it returns to the pool.
ADVSTUDY_LEASE_MINUTES = env_int("ADVSTUDY_LEASE_MINUTES", 10, minimum=1)
# How often one web process sweeps a study's expired leases back into the pool (0: on
# every trial). A sweep per trial cost a query over every active lease of the study.
ADVSTUDY_LEASE_SWEEP_SECONDS = env_int("ADVSTUDY_LEASE_SWEEP_SECONDS", 15, minimum=0)
# Timed studies: milliseconds the server allows beyond a trial's response deadline for the
# image's trip to the browser and the answer's trip back; an answer later than that is
# a timed-out trial, never a label (docs/studies.md, "Timing").
ADVSTUDY_NETWORK_ALLOWANCE_MS = env_int("ADVSTUDY_NETWORK_ALLOWANCE_MS", 500, minimum=0)

# Rate limits on annotators' entries (per address) and answers (per participant);
# django-ratelimit's "N/s", "N/m" or "N/h". Counted in Redis (CACHE_REDIS_URL), shared
# by every web process; unset (the demo), each process counts on its own.
ADVSTUDY_JOIN_RATE = env_str("ADVSTUDY_JOIN_RATE", "60/m")
ADVSTUDY_ANSWER_RATE = env_str("ADVSTUDY_ANSWER_RATE", "180/m")
RATELIMIT_USE_CACHE = "ratelimit"
# Redis down must not stop labelling: its errors are ignored and the limits let requests by.
RATELIMIT_FAIL_OPEN = True
# Proxies in front of gunicorn that append to X-Forwarded-For (0: clients connect directly);
# the rate limits count the address the last of them saw (labeling/limits.py).
ADVSTUDY_TRUSTED_PROXIES = env_int("ADVSTUDY_TRUSTED_PROXIES", 0, minimum=0)
_CACHE_REDIS_URL = env_str("CACHE_REDIS_URL")
_SHARED_CACHE = {
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": _CACHE_REDIS_URL,
    "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25},
}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": _SHARED_CACHE
    if _CACHE_REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "limits"},
    # Study reports and the charts drawn from them (analysis/report/cache.py), served while
    # the rows they read are unchanged: shared by every web process through Redis; without
    # it (the demo's one process), in memory, a few dozen reports at most.
    "reports": _SHARED_CACHE
    if _CACHE_REDIS_URL
    else {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "reports",
        "OPTIONS": {"MAX_ENTRIES": 200},
    },
}
if _CACHE_REDIS_URL:
    # Sessions read from Redis, written through to the database: an annotator's every
    # request reads their session, and the database's copy survives Redis going down.
    CACHES["sessions"] = _SHARED_CACHE
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    SESSION_CACHE_ALIAS = "sessions"
else:
    # django-ratelimit refuses a per-process cache; the demo runs one process.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# Celery. With no broker configured every task runs in-process, eagerly (scripts,
# benchmarks). The demo sets the filesystem broker (config/demo_broker.py): a folder
# that its worker reads, so it needs no Redis.
CELERY_TASK_ALWAYS_EAGER = not env_str("CELERY_BROKER_URL")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "attacks.tasks.train_model": {"queue": "gpu"},
    "attacks.tasks.run_generation_job": {"queue": "gpu"},
    "attacks.tasks.generate_chunk": {"queue": "gpu"},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Must exceed the longest task: an unacknowledged task is redelivered after it.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600, minimum=60),
}
if demo_broker.is_filesystem(CELERY_BROKER_URL):
    CELERY_BROKER_TRANSPORT_OPTIONS |= demo_broker.transport_options(
        Path(
            env_required(
                demo_broker.FOLDER_VARIABLE, reason="the filesystem broker keeps its messages there"
            )
        )
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# The researchers' REST API (/api/v1/, config/api_urls.py): a token from `manage.py
# api_token USER` for scripts, the signed-in session (with its CSRF check) for a browser.
# JSON only: no browsable pages, so that nothing but the schema describes the API.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so that a request without credentials gets 401 with "WWW-Authenticate: Token".
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.IsResearcher"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.api.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "advstudy researcher API",
    "DESCRIPTION": "Models, attack settings, generation jobs, studies, results and exports.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is for researchers, like everything it describes.
    "SERVE_PERMISSIONS": ["config.api.IsResearcher"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "attacks.models.JobStatus",
        "StudyStatusEnum": "study.models.Study.Status",
        "StudyRoleEnum": "study.models.StudyCollaborator.Role",
        # A collaborator's role as the sharing endpoints of studies, models and settings take it.
        "RoleEnum": ["view", "edit"],
    },
}

# "None" lets the session and CSRF cookies work inside MTurk's iframe (a third-party
# context); it needs HTTPS (the cookies are then Secure). Default: Django's "Lax".
COOKIES_SAMESITE = env_str("COOKIES_SAMESITE", "Lax")
if COOKIES_SAMESITE not in ("Lax", "Strict", "None"):
    raise ImproperlyConfigured("COOKIES_SAMESITE must be Lax, Strict or None")
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = COOKIES_SAMESITE
CSRF_FAILURE_VIEW = "config.csrf.csrf_failure"

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
    # HTTPS only. Behind a proxy that ends TLS, set SECURE_PROXY_SSL_HEADER_NAME (e.g.
    # HTTP_X_FORWARDED_PROTO) so that Django knows a request came over HTTPS.
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    # Django's deployment checklist asks for both; a deployment that shares its domain
    # with plain-HTTP subdomains turns them off.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    _proxy_header = env_str("SECURE_PROXY_SSL_HEADER_NAME")
    if _proxy_header:
        SECURE_PROXY_SSL_HEADER = (_proxy_header, "https")
    # The health check is plain HTTP inside the container network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# No referrer leaves for another site: annotator URLs carry the study's join token.
SECURE_REFERRER_POLICY = "same-origin"

# Arrow (the exports) allocates from jemalloc: pyarrow's Linux wheels default to
# mimalloc, which held more memory for the same batches and asks for transparent huge
# pages. Arrow reads this when pyarrow is imported, which nothing does before the
# settings; a deployment that sets it keeps its own.
if sys.platform == "linux":
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
