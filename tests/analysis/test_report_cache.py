"""The report is kept per study and served again until a label, an exclusion or a prediction
changes what it reads (analysis/report/cache.py); the dashboard draws a chart only where
it has data.

Built on the hand-worked study of tests/analysis/report_study.py: 3 participants label
all 8 items (4 per setting), the third is excluded by the study's rules, so each setting
shows 8 analysed labels. Runs on PostgreSQL, and on SQLite with DATABASE_URL set to a file.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from analysis.report import cache
from analysis.report.cache import ReportOptions, cached_report
from attacks.models import Prediction
from labeling import services
from labeling.services.exclusion import exclude_participant, include_participant
from study.design import SettingSample
from study.services import create_study
from tests.analysis.report_study import (
    PREDICTIONS,
    HandStudy,
    build_hand_study,
    make_model,
    make_setting,
)


@pytest.fixture
def hand(researcher) -> HandStudy:
    return build_hand_study(researcher)


@pytest.fixture
def computed(monkeypatch) -> list[int]:
    """The studies whose report was computed (not read from the cache), in order."""
    calls: list[int] = []
    compute = cache.study_report

    def counted(study, **options):
        calls.append(study.pk)
        return compute(study, **options)

    monkeypatch.setattr(cache, "study_report", counted)
    return calls


def dashboard(client: Client, study_id: int, query: str = "") -> str:
    response = client.get(f"/researcher/studies/{study_id}/dashboard/{query}")
    assert response.status_code == 200
    return response.content.decode()


def labels_of(html: str, setting: str) -> int:
    row = re.search(rf'<tr data-setting="{re.escape(setting)}">(.*?)</tr>', html, re.S)
    assert row is not None, setting
    found = re.search(r'data-measure="labels">(\d+)<', row.group(1))
    assert found is not None
    return int(found.group(1))


def test_a_second_view_reads_the_cache(hand: HandStudy, researcher_client, computed) -> None:
    study_id = hand.study.pk

    with CaptureQueriesContext(connection) as first_view:
        first = dashboard(researcher_client, study_id)
    with CaptureQueriesContext(connection) as second_view:
        second = dashboard(researcher_client, study_id)

    assert computed == [study_id]
    assert without_token(second) == without_token(first)
    assert len(second_view) < len(first_view)


def without_token(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)


def test_each_report_option_is_kept_apart(hand: HandStudy, researcher_client, computed) -> None:
    study_id = hand.study.pk

    left_out = dashboard(researcher_client, study_id)
    included = dashboard(researcher_client, study_id, "?include_excluded=1")
    dashboard(researcher_client, study_id)
    dashboard(researcher_client, study_id, "?include_excluded=1")

    assert computed == [study_id, study_id]
    assert labels_of(left_out, "pgd-0.1") == 8
    assert labels_of(included, "pgd-0.1") == 12


def test_a_new_label_changes_the_numbers_on_the_next_view(
    hand: HandStudy, researcher_client
) -> None:
    study_id = hand.study.pk
    assert labels_of(dashboard(researcher_client, study_id), "pgd-0.1") == 8

    # The excluded participant's slots were given back: a newcomer labels one of them.
    newcomer = services.join_study(hand.study)
    assignment = services.next_assignment(newcomer)
    assert assignment is not None
    services.submit_label(newcomer, assignment.public_id, 1, uuid.uuid4(), 900.0)
    setting = assignment.item.example.setting.name

    after = dashboard(researcher_client, study_id)
    assert labels_of(after, setting) == 9


def test_an_exclusion_and_a_reinclusion_change_the_numbers(
    hand: HandStudy, researcher_client, researcher
) -> None:
    study, first = hand.study, hand.participants[0]
    assert labels_of(dashboard(researcher_client, study.pk), "pgd-0.3") == 8

    exclude_participant(study, first, "answered at random", by=researcher)
    assert labels_of(dashboard(researcher_client, study.pk), "pgd-0.3") == 4

    include_participant(study, first, "checked again: fine", by=researcher)
    assert labels_of(dashboard(researcher_client, study.pk), "pgd-0.3") == 8


def test_a_new_prediction_changes_the_numbers_on_the_next_view(
    hand: HandStudy, researcher_client
) -> None:
    base = f"/researcher/studies/{hand.study.pk}"
    before = researcher_client.get(f"{base}/dashboard/charts/agreement.csv").content.decode()
    analysis = researcher_client.get(f"{base}/analysis/").content.decode()
    assert "late-model" not in before + analysis

    late = make_model("late-model")
    Prediction.objects.bulk_create(
        Prediction(example=hand.examples[name], model=late, label=label)
        for name, label in PREDICTIONS["robust"].items()
    )

    after = researcher_client.get(f"{base}/dashboard/charts/agreement.csv").content.decode()
    assert "late-model" in after
    assert "late-model" in researcher_client.get(f"{base}/analysis/").content.decode()


def test_a_report_computed_while_a_label_arrived_is_not_kept(hand: HandStudy, monkeypatch) -> None:
    compute = cache.study_report

    def with_a_label_meanwhile(study, **options):
        report = compute(study, **options)
        newcomer = services.join_study(study)
        assignment = services.next_assignment(newcomer)
        assert assignment is not None
        services.submit_label(newcomer, assignment.public_id, 1, uuid.uuid4(), 900.0)
        return report

    monkeypatch.setattr(cache, "study_report", with_a_label_meanwhile)
    raced = cached_report(hand.study, ReportOptions())
    monkeypatch.setattr(cache, "study_report", compute)
    fresh = cached_report(hand.study, ReportOptions())

    assert not raced.kept
    assert fresh.fingerprint != raced.fingerprint
    labels = sum(setting.summary.counts.labels for setting in fresh.report.settings)
    assert labels == 17


def test_charts_without_data_are_sentences_without_downloads(researcher, researcher_client) -> None:
    """A study with a psychometric family and no label yet: nothing to draw."""
    attacked = make_model("attacked")
    settings = [make_setting(f"pgd-{eps}", eps, attacked, [(1, 7), (2, 3)]) for eps in (0.1, 0.3)]
    study = create_study(
        owner=researcher,
        title="Nobody came yet",
        instructions="Which digit is this?",
        samples=[SettingSample(setting, 2) for setting in settings],
        controls=None,
        items_per_participant=4,
        labels_per_item=1,
    )

    html = dashboard(researcher_client, study.pk)

    assert "data-download" not in html
    assert "<img" not in html
    for name in ("rates", "agreement", "psychometric"):
        assert re.search(rf'<div id="chart-{name}" data-chart-empty>\s*<p', html), name
    assert "No labels yet for the change rates" in html
    assert (
        "No labels yet for pgd_linf against attacked (sensitivity, mnist): pgd-0.1 to pgd-0.3."
        in (html)
    )
    # The files stay downloadable by their address: the figure says the same in words.
    svg = researcher_client.get(f"/researcher/studies/{study.pk}/dashboard/charts/psychometric.svg")
    assert svg.status_code == 200


def test_charts_with_data_are_drawn_with_their_downloads(
    hand: HandStudy, researcher_client
) -> None:
    html = dashboard(researcher_client, hand.study.pk)

    assert "data-chart-empty" not in html
    assert "{#" not in html  # every template comment closed
    assert "{%" not in html
    for name in ("rates", "agreement", "psychometric"):
        assert f'<figure id="chart-{name}">' in html
        assert f'data-download="{name}.svg"' in html
        image = f'<img src="/researcher/studies/{hand.study.pk}/dashboard/charts/{name}.svg"'
        assert image in html


def test_the_apis_report_is_the_cached_one_and_follows_a_new_label(
    hand: HandStudy, researcher_client, computed
) -> None:
    url = f"/api/v1/studies/{hand.study.pk}/results/"
    dashboard(researcher_client, hand.study.pk)

    before = researcher_client.get(url).json()
    assert computed == [hand.study.pk]  # the dashboard's report, read again
    newcomer = services.join_study(hand.study)
    assignment = services.next_assignment(newcomer)
    assert assignment is not None
    services.submit_label(newcomer, assignment.public_id, 1, uuid.uuid4(), 900.0)
    after = researcher_client.get(url).json()

    def labels(results: dict) -> int:
        return sum(row["summary"]["counts"]["labels"] for row in results["settings"])

    assert (labels(before), labels(after)) == (16, 17)
    assert len(computed) == 2


def test_a_report_with_a_seed_of_the_callers_own_is_computed_not_kept(
    hand: HandStudy, computed
) -> None:
    for _ in range(2):
        cache.cached_study_report(hand.study, seed=7, bootstrap_replicates=50)
        cache.cached_study_report(hand.study)
        cache.cached_study_report(hand.study)

    # the pages' default once; each of the caller's own twice, never kept
    assert computed == [hand.study.pk] * 3
