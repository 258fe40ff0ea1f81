"""A job created through the API is run by the real Celery worker, and its progress polled."""

from __future__ import annotations

import time

from django.contrib.auth.models import User

from attacks.models import Example
from tests.api.conftest import clean_setting_named, token_client
from tests.fixtures import PASSWORD


def test_a_job_created_through_the_api_is_generated_by_the_worker(
    transactional_db, celery_worker_process
) -> None:
    researcher = User.objects.create_user("api-worker", password=PASSWORD, is_staff=True)
    api = token_client(researcher)
    setting = clean_setting_named("clean-worker", researcher)

    created = api.post(
        "/api/v1/jobs/", {"setting": setting.pk, "count": 6, "chunk_size": 2}, format="json"
    )
    assert created.status_code == 201
    job_url = f"/api/v1/jobs/{created.json()['id']}/"
    seen = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = api.get(job_url).json()
        seen.add(job["status"])
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.3)

    assert job["status"] == "succeeded", job
    assert (job["done"], job["progress"]) == (6, 1.0)
    assert job["worker_host"]
    assert job["device"] == "cpu"
    assert Example.objects.filter(job_id=job["id"]).count() == 6
    assert seen <= {"queued", "running", "succeeded"}
