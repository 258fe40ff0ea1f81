"""The researcher's result pages: the analysis report, dashboard, charts, downloads and gallery.

Built on the hand-worked study of tests/analysis/report_study.py: every count
asserted here is read off its PLAN.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.test import Client

from analysis import gallery
from analysis.report import study_report
from tests.analysis.report_study import HandStudy, build_hand_study


@pytest.fixture
def hand(researcher) -> HandStudy:
    return build_hand_study(researcher)


def pages(study_id: int) -> list[str]:
    base = f"/researcher/studies/{study_id}"
    charts = [
        f"{base}/dashboard/charts/{name}.{image_format}"
        for name in ("rates", "agreement", "psychometric")
        for image_format in ("svg", "png", "csv")
    ]
    return [
        f"{base}/analysis/",
        f"{base}/dashboard/",
        f"{base}/dashboard/progress.json",
        f"{base}/gallery/",
        f"{base}/dashboard/charts/annotators.csv",
        *charts,
    ]


def test_every_result_page_is_the_owners_only(hand: HandStudy, researcher_client, outsider) -> None:
    stranger = Client()
    stranger.force_login(outsider)
    for url in pages(hand.study.pk):
        assert researcher_client.get(url).status_code == 200, url
        assert stranger.get(url).status_code == 404, url
        anonymous = Client().get(url)
        assert anonymous.status_code == 302, url
        assert anonymous["Location"].startswith("/accounts/login/"), url


def test_unknown_charts_and_formats_are_not_found(hand: HandStudy, researcher_client) -> None:
    base = f"/researcher/studies/{hand.study.pk}/dashboard/charts"
    assert researcher_client.get(f"{base}/nonsense.svg").status_code == 404
    assert researcher_client.get(f"{base}/rates.pdf").status_code == 404
    assert researcher_client.get(f"{base}/annotators.svg").status_code == 404


def test_downloads_have_their_content_types_and_file_names(
    hand: HandStudy, researcher_client
) -> None:
    base = f"/researcher/studies/{hand.study.pk}/dashboard/charts"

    svg = researcher_client.get(f"{base}/rates.svg")
    png = researcher_client.get(f"{base}/psychometric.png")
    table = researcher_client.get(f"{base}/agreement.csv")

    assert svg["Content-Type"] == "image/svg+xml"
    assert b"<svg" in svg.content
    assert png["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert table["Content-Type"].startswith("text/csv")
    assert f'filename="study-{hand.study.pk}-agreement.csv"' in table["Content-Disposition"]


def read_csv(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_chart_numbers_as_csv_equal_the_report(hand: HandStudy, researcher_client) -> None:
    base = f"/researcher/studies/{hand.study.pk}/dashboard/charts"
    report = study_report(hand.study, include_excluded=True)

    rates = read_csv(researcher_client.get(f"{base}/rates.csv?include_excluded=1"))
    agreement = read_csv(researcher_client.get(f"{base}/agreement.csv?include_excluded=1"))
    curve = read_csv(researcher_client.get(f"{base}/psychometric.csv?include_excluded=1"))

    target = next(
        r for r in rates if r["setting"] == "pgd-0.3" and r["measure"] == "target_reached"
    )
    expected = report.settings[1].summary.target_reached
    assert (int(target["successes"]), int(target["trials"])) == (2, 4)
    assert float(target["wilson_low"]) == expected.interval.low
    assert float(target["wilson_high"]) == expected.interval.high
    row = next(r for r in agreement if r["setting"] == "pgd-0.1" and r["model"] == "attacked")
    model = next(m for m in report.settings[0].summary.models if m.model.name == "attacked")
    assert (int(row["hits"]), int(row["judged"])) == (1, 3)
    assert float(row["participants_low"]) == model.agreement.by_participants.low
    assert float(row["examples_high"]) == model.agreement.by_examples.high
    assert [(r["eps"], r["changed"], r["labels"]) for r in curve] == [
        ("0.1", "4", "12"),
        ("0.3", "10", "12"),
    ]
    assert float(curve[0]["eps50"]) == report.families[0].fit.midpoint


def test_annotators_csv_lists_every_participant_pseudonymised(
    hand: HandStudy, researcher_client
) -> None:
    url = f"/researcher/studies/{hand.study.pk}/dashboard/charts/annotators.csv"

    kept = read_csv(researcher_client.get(url))
    every = read_csv(researcher_client.get(f"{url}?include_excluded=1"))

    assert len(kept) == 2
    assert len(every) == 3
    assert {row["excluded"] for row in every} == {"True", "False"}
    public_ids = {str(participant.public_id) for participant in hand.participants}
    assert not public_ids & {row["pseudonym"] for row in every}


def test_progress_json_counts_labels_participants_and_exclusions(
    hand: HandStudy, researcher_client, django_assert_max_num_queries
) -> None:
    url = f"/researcher/studies/{hand.study.pk}/dashboard/progress.json"

    with django_assert_max_num_queries(5):  # session, user, study, items, participants
        data = researcher_client.get(url).json()

    completed = hand.study.participants.exclude(completed_at=None).count()
    assert data == {
        "items": 8,
        "labels": 16,  # the excluded participant's eight gave their slots back
        "labels_needed": 24,
        "labels_over_k": 0,
        "participants": 3,
        "completed": completed,
        "excluded": 1,
    }


def test_dashboard_shows_the_table_charts_and_a_polling_script(
    hand: HandStudy, researcher_client
) -> None:
    html = researcher_client.get(
        f"/researcher/studies/{hand.study.pk}/dashboard/?include_excluded=1"
    ).content.decode()

    row = re.search(r'<tr data-setting="pgd-0.3">(.*?)</tr>', html, re.S).group(1)
    assert re.search(r'data-measure="target_reached">0.5000 \[0.150, 0.850\]<', row)
    assert 'data-measure="with_majority">4<' in row
    for name in ("rates", "agreement", "psychometric"):
        assert f'id="chart-{name}"' in html
        assert f'data-download="{name}.png"' in html
    # Each chart's image comes from its own URL, with the page's choices: the page waits for none.
    assert html.count('.svg?include_excluded=1" alt=') == 3
    assert "progress.json" in html
    assert "include_excluded=1" in html  # downloads keep the choice


def test_analysis_page_shows_every_measure_and_says_why_one_is_undefined(
    hand: HandStudy, researcher_client
) -> None:
    html = researcher_client.get(f"/researcher/studies/{hand.study.pk}/analysis/").content.decode()

    # Without the excluded participant, class 1 of pgd-0.1 (a1 [1, 1], a2 [1, 1]) has one category.
    row = re.search(
        r'<tr data-group="pgd-0.1/1">\s*(.*?)</tr>', html[html.index('id="reliability"') :], re.S
    )
    assert "undefined: every label is in one category" in row.group(1)
    shares = re.search(
        r'<tr data-group="pgd-0.3">(.*?)</tr>', html[html.index('id="shares"') :], re.S
    )
    assert 'data-share="target_reached">2/3 = 0.6667' in shares.group(1)
    assert "pgd_linf against attacked" in html  # the psychometric family
    assert 'data-participant="' in html
    assert f'href="/researcher/studies/{hand.study.pk}/dashboard/"' in html


def test_analysis_page_keeps_the_row_the_end_to_end_test_reads(
    hand: HandStudy, researcher_client
) -> None:
    url = f"/researcher/studies/{hand.study.pk}/analysis/?include_excluded=1"
    html = researcher_client.get(url).content.decode()

    row = re.search(r'<tr data-setting="pgd-0.3">(.*?)</tr>', html, re.S).group(1)
    shown = dict(re.findall(r'data-measure="(\w+)">([^<]*)<', row))
    assert shown == {
        "examples": "4",
        "labels": "12",
        "examples_labelled": "4",
        "with_majority": "4",
        "ties": "0",
        "changed_share": "1.0000",
    }
    agreement = re.search(r'data-model="attacked">attacked:\s*([^<\s]+)', row)
    assert agreement.group(1) == "0.5000"


def test_study_page_links_to_the_dashboard(hand: HandStudy, researcher_client) -> None:
    html = researcher_client.get(f"/researcher/studies/{hand.study.pk}/").content.decode()
    assert f'href="/researcher/studies/{hand.study.pk}/dashboard/"' in html


def shown_examples(client: Client, study_id: int, query: str) -> list[int]:
    html = client.get(f"/researcher/studies/{study_id}/gallery/?{query}").content.decode()
    return [int(found) for found in re.findall(r'data-example="(\d+)"', html)]


def names(hand: HandStudy, *wanted: str) -> list[int]:
    return [hand.examples[name].pk for name in wanted]


def test_gallery_filters_by_outcome(hand: HandStudy, researcher_client) -> None:
    study_id = hand.study.pk
    every = "include_excluded=1"

    assert shown_examples(researcher_client, study_id, f"outcome=target&{every}") == names(
        hand, "b1", "b3"
    )
    assert shown_examples(researcher_client, study_id, f"outcome=changed&{every}") == names(
        hand, "b1", "b2", "b3", "b4"
    )
    assert shown_examples(researcher_client, study_id, f"outcome=tie&{every}") == names(hand, "a4")
    # Without the excluded participant a3 and b4 tie as well.
    assert shown_examples(researcher_client, study_id, "outcome=tie") == names(
        hand, "a3", "a4", "b4"
    )


def test_gallery_filters_by_setting_and_source_class(hand: HandStudy, researcher_client) -> None:
    study_id, setting = hand.study.pk, hand.settings["b"].pk

    assert shown_examples(researcher_client, study_id, f"setting={setting}") == names(
        hand, "b1", "b2", "b3", "b4"
    )
    assert shown_examples(
        researcher_client, study_id, f"setting={setting}&source_class=2"
    ) == names(hand, "b3", "b4")
    assert shown_examples(researcher_client, study_id, "outcome=nonsense") == names(
        hand, "a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"
    )


def test_gallery_shows_votes_predictions_and_the_researchers_image_url(
    hand: HandStudy, researcher_client
) -> None:
    html = researcher_client.get(
        f"/researcher/studies/{hand.study.pk}/gallery/?include_excluded=1&outcome=target"
    ).content.decode()

    card = re.search(
        rf'data-example="{hand.examples["b1"].pk}"(.*?)</div>\s*</div>', html, re.S
    ).group(1)
    image = f"/researcher/studies/{hand.study.pk}/examples/{hand.examples['b1'].pk}.png"
    assert f'src="{image}"' in card
    assert "2 votes for 7, 1 for 1" in card
    assert "attacked predicts 7; robust predicts 1" in card


def test_gallery_pages_keep_the_filters(hand: HandStudy, researcher_client, monkeypatch) -> None:
    monkeypatch.setattr(gallery, "EXAMPLES_PER_PAGE", 3)
    study_id, setting = hand.study.pk, hand.settings["a"].pk

    first = shown_examples(researcher_client, study_id, "")
    html = researcher_client.get(
        f"/researcher/studies/{study_id}/gallery/?setting={setting}"
    ).content.decode()
    second = shown_examples(researcher_client, study_id, f"setting={setting}&page=2")

    assert first == names(hand, "a1", "a2", "a3")
    assert f'href="?setting={setting}&amp;page=2"' in html
    assert second == names(hand, "a4")


def test_a_study_without_labels_has_pages_with_nothing_measured(
    make_study, researcher_client
) -> None:
    study = make_study(count=3, items_per_participant=3)

    report = study_report(study)
    (setting,) = report.settings
    summary = setting.summary
    assert (summary.counts.examples, summary.counts.labels, summary.majorities.unlabelled) == (
        3,
        0,
        3,
    )
    assert summary.changed.value is None
    assert summary.fleiss_kappa.value is None
    assert summary.fleiss_kappa.reason == "no example has two labels"
    assert report.annotators == ()
    for url in pages(study.pk):
        assert researcher_client.get(url).status_code == 200, url
    rates = read_csv(
        researcher_client.get(f"/researcher/studies/{study.pk}/dashboard/charts/rates.csv")
    )
    assert [(row["measure"], row["trials"], row["share"]) for row in rates] == [
        ("changed", "0", ""),
        ("target_reached", "0", ""),
    ]
