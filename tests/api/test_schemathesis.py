"""Schemathesis against the API's own OpenAPI schema: generated requests never get a 5xx.

The schema is read from /api/v1/schema/ with a real researcher's token, and the cases go
through the Django WSGI app in this process, so they see the test's seeded rows: a
model, a clean setting with examples and a job, and a draft study. Generated ids rarely
exist; three in four are pointed at the seeded rows so that the handlers behind the
404s run too. The counts go to test-artifacts/schemathesis.json.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from attacks import services as attack_services
from attacks.engine.zoo import zoo_entry, zoo_weights
from attacks.models import GenerationJob

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Valid and invalid cases per operation: about 25 s for the whole API on two cores.
EXAMPLES_PER_OPERATION = 30


@pytest.fixture
def seeded(db, researcher, make_study) -> dict[str, Any]:
    """Rows for the generated requests to find (real PNGs: the exports read them); a token."""
    name = "mnist-small-cnn-standard"
    model = attack_services.register_zoo_model(zoo_entry(name), zoo_weights(zoo_entry(name)))[0]
    study = make_study()  # live, over 4 generated clean examples
    job = GenerationJob.objects.get()
    return {
        "models": model.pk,
        "attack-settings": job.setting_id,
        "jobs": job.pk,
        "studies": study.pk,
        "user_id": researcher.pk,
        "token": Token.objects.create(user=researcher).key,
    }


@pytest.fixture
def api_schema(seeded: dict[str, Any]) -> Iterator[Any]:
    # Django's test client keeps the test's transaction open by not closing connections
    # around requests; a raw WSGI call would close it (and lose the seeded rows) unless
    # the same two signal handlers are disconnected.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi(
            "/api/v1/schema/",
            get_wsgi_application(),
            headers={"Authorization": f"Token {seeded['token']}"},
        )
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_generated_requests_never_get_a_server_error(api_schema, seeded: dict) -> None:
    # One hypothesis run per operation inside this test, rather than schemathesis' pytest
    # plugin: its lazy loader reads a node attribute that pytest 9 no longer has.
    counts: Counter[str] = Counter()
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        try:
            _fuzz(operation, seeded, counts)
        except Exception as error:
            failures[operation.label] = f"{type(error).__name__}: {error}"[:2000]
    counts["failures"] = len(failures)
    ARTIFACTS.mkdir(exist_ok=True)
    summary = {"operations": len(operations), **counts}
    (ARTIFACTS / "schemathesis.json").write_text(json.dumps(summary, indent=2, sort_keys=True))

    assert not failures, json.dumps(failures, indent=2)
    assert len(operations) >= 20
    assert counts["status 2xx"] > 0


def _fuzz(operation, seeded: dict, counts: Counter[str]) -> None:
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same cases on every run: a failure here is reproducible
        database=None,
    )
    def run(case) -> None:
        _point_ids_at_seeded_rows(case, seeded)
        response = case.call(headers={"Authorization": f"Token {seeded['token']}"})
        counts["cases"] += 1
        counts[f"status {response.status_code // 100}xx"] += 1
        case.validate_response(response, checks=[not_a_server_error])

    run()


def _point_ids_at_seeded_rows(case, seeded: dict) -> None:
    parameters = case.path_parameters or {}
    resource = case.path.split("/")[3]  # /api/v1/<resource>/...
    for key in ("id", "study_id", "user_id"):
        value = parameters.get(key)
        if isinstance(value, int) and value % 4 != 0:
            parameters[key] = seeded["user_id"] if key == "user_id" else seeded[resource]
