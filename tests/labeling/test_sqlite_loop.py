"""The labelling loop on SQLite, as the demo serves it (``./run demo`` needs no server).

On PostgreSQL the loop runs hand-written prepared statements; on SQLite the same
functions take the ORM's portable way (labeling/services/statements.py). The suite's
database is PostgreSQL, so this runs the loop in a subprocess on a fresh SQLite file:
three open-link participants label a study of k = 2 through the JSON API (answers,
re-sent answers, a practice item), and the database must then hold exactly k labels
per item, none doubled, and the counts kept at each answer must equal the labels'.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.sqlite import run_on_sqlite

_LOOP = textwrap.dedent(
    """
    import json, uuid
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User
    from django.test import Client
    from attacks import services as attack_services, tasks
    from labeling.models import Label
    from labeling.services.tallies import drift, recount
    from study.models import StudyItem
    from study.services import SettingSample, create_study

    setting = attack_services.create_attack_setting(
        name="clean", attack_name="clean", config={}, dataset="mnist",
        source_split="test", source_range=(9000, 9100), seed=0,
    )
    tasks.run_generation_job(attack_services.create_generation_job(setting, 6).pk)
    study = create_study(
        owner=User.objects.create_user("researcher"), title="SQLite", instructions="Digit?",
        samples=[SettingSample(setting, 6)], controls=None,
        items_per_participant=4, labels_per_item=2,
    )
    answered = 0
    for _ in range(3):
        client = Client()
        base = f"/s/{study.join_token}"
        assert client.post(f"{base}/consent/", {"choice": "agree"}).status_code == 302
        assert client.post(f"{base}/instructions/").status_code == 302
        trial = client.get(f"{base}/api/next").json()
        while "assignment" in trial:
            body = json.dumps({"assignment": trial["assignment"], "value": 3,
                               "client_key": str(uuid.uuid4()), "client_response_ms": 700})
            reply = client.post(f"{base}/api/labels", body, content_type="application/json")
            assert reply.status_code == 200, reply.content
            trial = reply.json()["next"] or client.get(f"{base}/api/next").json()
            # A re-sent copy: the label already stored (or, after the last one, the end).
            again = client.post(f"{base}/api/labels", body, content_type="application/json")
            assert again.status_code == (409 if trial.get("done") else 200), again.content
            answered += 1
    per_item = [item.labels.count() for item in StudyItem.objects.filter(study=study)]
    kept_drift = bool(drift(study))
    StudyItem.objects.update(votes={})  # forgotten counts: the ORM's recount writes them back
    recount(study)
    print(json.dumps({"answered": answered, "labels": Label.objects.count(),
                      "per_item": sorted(per_item), "drift": kept_drift,
                      "after_recount": bool(drift(study))}))
    """
)


def test_the_labelling_loop_runs_on_sqlite(tmp_path: Path) -> None:
    result = run_on_sqlite(
        tmp_path / "loop.sqlite3",
        ["-c", _LOOP],
        timeout_s=300,
        DJANGO_SETTINGS_MODULE="tests.settings",
        MEDIA_ROOT=str(tmp_path / "media"),
        ALLOWED_HOSTS="testserver",  # Django's test client
    )

    assert result.returncode == 0, result.stderr[-3000:]
    outcome = result.stdout.strip().splitlines()[-1]
    # 6 items x k = 2 = 12 slots over 3 participants of 4 items each: all filled, once.
    # The votes and participants' figures counted at each answer equal the labels'.
    assert outcome == (
        '{"answered": 12, "labels": 12, "per_item": [2, 2, 2, 2, 2, 2], "drift": false, '
        '"after_recount": false}'
    )
