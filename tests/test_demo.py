"""The demo command sets everything up on SQLite through its own worker; served, its links work."""

import io
import json
import os
import re
import sqlite3
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urljoin

import pandas as pd
import pyarrow.parquet as pq
import requests

from attacks.engine.zoo import zoo_entries
from tests.http_flow import _CONFIG, _CSRF, _form, serving, signed_in
from tests.sqlite import run_on_sqlite


def test_demo_sets_up_on_sqlite_through_its_own_worker_and_stops_it(tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    result = run_on_sqlite(
        database,
        ["manage.py", "demo", "--no-serve", "--examples", "6", "--epochs", "1"],
        timeout_s=600,
        DEBUG="1",
        MEDIA_ROOT=str(tmp_path / "media"),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    worker = re.search(r"Celery worker started \(pid (\d+)\)", result.stdout)
    assert worker, result.stdout[-3000:]
    assert not _alive(int(worker.group(1))), "--no-serve left the worker running"
    assert "Annotators join at:  http://127.0.0.1:8000/s/" in result.stdout
    assert "Researchers sign in: http://127.0.0.1:8000/researcher/" in result.stdout
    with sqlite3.connect(database) as db:
        counts = dict(
            db.execute(
                "select s.name, count(e.id) from attacks_attacksetting s "
                "join attacks_example e on e.setting_id = s.id group by s.name"
            ).fetchall()
        )
        accuracy = db.execute(
            "select clean_accuracy from attacks_classifiermodel where name = 'demo-small-cnn'"
        ).fetchone()[0]
        predictions_per_example = db.execute(
            "select count(*) * 1.0 / count(distinct example_id) from attacks_prediction"
        ).fetchone()[0]
        study = db.execute(
            "select status, consent_text, attention_checks_per_participant from study_study"
        ).fetchall()
        kinds = dict(db.execute("select kind, count(*) from study_studyitem group by kind"))
        hosts = {row[0] for row in db.execute("select worker_host from attacks_generationjob")}
    # The clean setting also holds the 3 practice images and the pool of 4 attention checks.
    assert counts == {"demo-pgd-linf-0.3": 6, "demo-nn-invariance-linf-0.3": 6, "demo-clean": 13}
    assert kinds == {"main": 6 + 6, "control": 3, "practice": 3, "attention": 4}
    assert len(study) == 1
    assert study[0][0] == "live"
    assert "demo study" in study[0][1]
    assert study[0][2] == 2
    assert accuracy > 0.85
    assert predictions_per_example == 1 + len(zoo_entries())  # the demo's model, the shipped ones
    assert len(list((tmp_path / "media" / "examples").glob("*.png"))) == 25
    assert all(host for host in hosts)  # run by a worker, not in the demo's process


def test_every_export_link_of_the_demo_study_downloads_its_whole_table(tmp_path: Path) -> None:
    # Given the demo set up on a SQLite file and served as `./run demo` serves it, and
    # two annotators who labelled through the open link
    database, media = tmp_path / "demo.sqlite3", tmp_path / "media"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "ADVSTUDY_DATA_DIR"}
    }
    environment.update(DATABASE_URL=f"sqlite:///{database}", DEBUG="1", MEDIA_ROOT=str(media))
    setup = run_on_sqlite(
        database, ["manage.py", "demo", "--no-serve", "--examples", "4", "--epochs", "1"],
        timeout_s=600, DEBUG="1", MEDIA_ROOT=str(media),
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr[-3000:]
    join_path = re.search(r"Annotators join at:  http://[^/]+(/s/\S+)", setup.stdout).group(1)
    password = re.search(r"password '([^']+)'", setup.stdout).group(1)
    analysis_path = re.search(r"Analysis: +http://[^/]+(\S+)", setup.stdout).group(1)

    with serving(["manage.py", "serve"], environment) as base:
        answered = [annotate_rightly(base + join_path, value, database) for value in (3, 5)]
        researcher = signed_in(base, "researcher", password)
        page = researcher.get(base + analysis_path).text
        links = sorted(set(re.findall(r'href="(/researcher/studies/\d+/exports/[^"]+)"', page)))
        downloads = {link: researcher.get(base + link) for link in links}

    # Then every link answers 200 with a file whose rows are the study's
    with sqlite3.connect(database) as db:
        items, labels, people = db.execute(EXPECTED_ROWS).fetchone()
    assert labels == sum(answered) > 0
    assert people == 2
    expected = {"examples": items, "annotations": labels, "participants": people}
    assert len(links) == 10
    for link, response in downloads.items():
        assert response.status_code == 200, (link, response.text[:300])
        table, export_format = link.rsplit("/", 1)[1].split(".")
        assert rows_in(response.content, export_format) == expected[table], link


# Analysed (main and control) items; their labels; participants (none is excluded).
EXPECTED_ROWS = """SELECT
    (SELECT COUNT(*) FROM study_studyitem WHERE kind IN ('main', 'control')),
    (SELECT COUNT(*) FROM labeling_label l JOIN study_studyitem i ON i.id = l.item_id
     WHERE i.kind IN ('main', 'control')),
    (SELECT COUNT(*) FROM labeling_participant)"""


def annotate_rightly(join_url: str, value: int, database: Path) -> int:
    """A new annotator through consent, practice and attention checks (answered right,
    so that nobody is excluded), answering ``value`` to every other trial through the
    page's JSON API; how many main and control answers were stored."""
    session = requests.Session()
    _form(session, join_url.rstrip("/") + "/consent/", {"choice": "agree"})
    page = _form(session, join_url.rstrip("/") + "/instructions/", {})
    config = json.loads(_CONFIG.search(page.text).group(1))
    token = _CSRF.search(page.text).group(1)
    state, stored = config["state"], 0
    while not state.get("done"):
        with sqlite3.connect(database) as db:
            shown = uuid.UUID(state["assignment"]).hex  # how Django stores a UUID in SQLite
            kind, expected = db.execute(SHOWN_ITEM, (shown,)).fetchone()
        answer_value = value if expected is None else expected
        body = {"assignment": state["assignment"], "value": answer_value,
                "client_key": str(uuid.uuid4()), "client_response_ms": 900}  # fmt: skip
        reply = session.post(
            urljoin(join_url, config["urls"]["labels"]),
            json=body,
            headers={"X-CSRFToken": token, "Referer": join_url},
        )
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        stored += bool(answer.get("stored")) and kind in ("main", "control")
        state = answer.get("next") or session.get(urljoin(join_url, config["urls"]["next"])).json()
    return stored


SHOWN_ITEM = """SELECT i.kind, i.expected_label FROM labeling_assignment a
    JOIN study_studyitem i ON i.id = a.item_id WHERE a.public_id = ?"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def rows_in(data: bytes, export_format: str) -> int:
    if export_format == "csv":
        return len(pd.read_csv(io.BytesIO(data)))
    if export_format == "jsonl":
        return len(data.splitlines())
    if export_format == "parquet":
        return pq.read_metadata(io.BytesIO(data)).num_rows
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        images = [name for name in archive.namelist() if name.startswith("images/")]
        metadata = pq.read_table(io.BytesIO(archive.read("metadata.parquet")))
        assert sorted(metadata.column("file_name").to_pylist()) == sorted(images)
        return len(images)
