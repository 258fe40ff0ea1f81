"""The dashboard of a demo study: first view, repeat views (the cached report), and the
view after one new label (the report computed again), through Django's test client.

    ./run demo --no-serve          # or any database with the demo study and some labels
    DEBUG=1 DATABASE_URL=sqlite:///$PWD/demo-data/db.sqlite3 MEDIA_ROOT=$PWD/demo-data/media \\
        .venv/bin/python benchmarks/bench_dashboard.py [--repeats 5]

The new label is a real one (a participant joins and answers through the services), so
run it on a copy of the database you want to keep.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from labeling.models import Label  # noqa: E402
from labeling.services.assignment import next_assignment  # noqa: E402
from labeling.services.participation import join_study, mark_instructions_read  # noqa: E402
from labeling.services.submission import submit_label  # noqa: E402
from study.models import Study  # noqa: E402


def timed_view(client: Client, url: str) -> tuple[float, float]:
    """(wall ms, CPU ms) of one GET."""
    started, cpu = time.perf_counter(), time.process_time()
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000


def add_one_label(study: Study) -> None:
    participant = join_study(study, consented=True)
    mark_instructions_read(participant)
    assignment = next_assignment(participant)
    assert assignment is not None, "the study has no item left to label"
    value = assignment.item.example.source_label
    submit_label(participant, assignment.public_id, value, uuid.uuid4(), 1000.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    study = Study.objects.get(title__startswith="Demo")
    client = Client(HTTP_HOST="localhost")  # one of ALLOWED_HOSTS' defaults
    client.force_login(get_user_model().objects.get(username="researcher"))
    url = f"/researcher/studies/{study.pk}/dashboard/"
    labels = Label.objects.filter(item__study=study).count()
    print(f"dashboard of {study.title!r}, {labels} labels")
    print("| view | wall ms | CPU ms |\n|---|---|---|")
    first = timed_view(client, url)
    print(f"| first (fresh process) | {first[0]:.0f} | {first[1]:.0f} |")
    repeats = [timed_view(client, url) for _ in range(args.repeats)]
    print(
        f"| repeat, median of {args.repeats} | {statistics.median(r[0] for r in repeats):.0f} "
        f"| {statistics.median(r[1] for r in repeats):.0f} |"
    )
    add_one_label(study)
    after = timed_view(client, url)
    print(f"| after one new label | {after[0]:.0f} | {after[1]:.0f} |")
    again = timed_view(client, url)
    print(f"| repeat after it | {again[0]:.0f} | {again[1]:.0f} |")


if __name__ == "__main__":
    main()
