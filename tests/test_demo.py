"""The demo command sets everything up on SQLite with in-process tasks, without serving."""

import sqlite3
from pathlib import Path

from tests.sqlite import run_on_sqlite


def test_demo_runs_on_sqlite_without_a_broker(tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    result = run_on_sqlite(
        database,
        ["manage.py", "demo", "--no-serve", "--examples", "6", "--epochs", "1"],
        timeout_s=600,
        DEBUG="1",
        MEDIA_ROOT=str(tmp_path / "media"),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Annotators join at:  http://127.0.0.1:8000/s/" in result.stdout
    assert "Researchers sign in: http://127.0.0.1:8000/researcher/" in result.stdout
    with sqlite3.connect(database) as db:
        counts = dict(
            db.execute(
                "select s.name, count(e.id) from attacks_attacksetting s "
                "join attacks_example e on e.setting_id = s.id group by s.name"
            ).fetchall()
        )
        items = db.execute("select count(*) from study_studyitem").fetchone()[0]
        accuracy = db.execute(
            "select clean_accuracy from attacks_classifiermodel where name = 'demo-small-cnn'"
        ).fetchone()[0]
        predictions_per_example = db.execute(
            "select count(*) * 1.0 / count(distinct example_id) from attacks_prediction"
        ).fetchone()[0]
    assert counts == {"demo-pgd-linf-0.3": 6, "demo-nn-invariance-linf-0.3": 6, "demo-clean": 6}
    assert items == 6 + 6 + 3
    assert accuracy > 0.85
    assert predictions_per_example == 4  # the demo's model and the three shipped ones
    assert len(list((tmp_path / "media" / "examples").glob("*.png"))) == 18
