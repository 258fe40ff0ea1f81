"""The paper table (analysis/report/paper_table.py) against the report it is rendered from.

On the hand-worked study (tests/analysis/report_study.py), the Markdown and LaTeX tables
are parsed back and every number compared with the report's own, to the two decimals
printed; the LaTeX is checked for the shape that compiles (braces, booktabs rules, one
cell per column, special characters escaped); the caption for the study's provenance.
The page, its downloads and the REST API answer the owner and are 404 to another
researcher; an unknown format is a 400 with a sentence; a study without labels says so.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client

from analysis.report import GroupReport, StudyReport, study_report
from analysis.report.paper_table import (
    NO_LABELS,
    Provenance,
    UnknownFormat,
    latex_table,
    markdown_table,
    paper_table,
)
from attacks.models import AttackSetting, ClassifierModel
from attacks.provenance import code_version
from study.design import SettingSample
from study.models import Study
from study.services import add_collaborator, create_study
from tests.analysis.report_study import HandStudy, build_hand_study, make_model, make_setting
from tests.api.conftest import token_client

REPLICATES = 200
SPECIAL_SETTING = "pgd_0.1 & 50% #1"  # every character LaTeX would read as markup
SPECIAL_MODEL = "robust_v2"
WHEN = datetime(2026, 12, 7, 21, 30, tzinfo=UTC)
# "0.42 [0.35, 0.49]", "0.42" (no interval), or a dash (undefined); LaTeX writes "$-$0.05".
MEASURE = re.compile(
    r"^(?P<value>-?\d+\.\d\d)(?: \[(?P<low>-?\d+\.\d\d), (?P<high>-?\d+\.\d\d)\])?$"
)
FIXED_COLUMNS = 10  # setting, kind, budget, examples, labels, changed, target, bound, kappa, alpha


@pytest.fixture
def hand(researcher: User) -> HandStudy:
    hand = build_hand_study(researcher)
    AttackSetting.objects.filter(pk=hand.settings["a"].pk).update(name=SPECIAL_SETTING)
    ClassifierModel.objects.filter(pk=hand.models["robust"].pk).update(name=SPECIAL_MODEL)
    return hand


@pytest.fixture
def report(hand: HandStudy) -> StudyReport:
    return study_report(hand.study, bootstrap_replicates=REPLICATES, seed=0)


def provenance_of(study: Study) -> Provenance:
    return Provenance(study.pk, study.title, study.labels_per_item, WHEN, code_version())


def parse_measure(cell: str) -> tuple[float, float, float] | None:
    """The value and interval a cell prints; None for a dash; NaN ends where none is printed."""
    cell = cell.replace("$-$", "-").strip()
    if cell in ("—", "---"):
        return None
    found = MEASURE.match(cell)
    assert found, f"not a measure: {cell!r}"
    low, high = found["low"], found["high"]
    return (
        float(found["value"]),
        float(low) if low else math.nan,
        float(high) if high else math.nan,
    )


def expected_measures(row: GroupReport) -> list[tuple[float | None, float, float]]:
    """The report's numbers in the table's order of measure columns."""
    measures = [
        (row.changed.value, *row.changed.interval),
        (row.target_reached.value, *row.target_reached.interval),
        (row.robust_accuracy_upper_bound.value, *row.robust_accuracy_upper_bound.interval),
        (row.fleiss_kappa.value, *row.fleiss_kappa.interval),
        (row.krippendorff_alpha.value, *row.krippendorff_alpha.interval),
    ]
    measures += [(model.agreement.value, *model.agreement.by_examples) for model in row.models]
    measures += [
        (model.error_consistency.value, *model.error_consistency.interval) for model in row.models
    ]
    return measures


def assert_row_is_the_reports(cells: list[str], row: GroupReport) -> None:
    assert int(cells[3]) == row.counts.examples
    assert int(cells[4]) == row.counts.labels
    for cell, (value, low, high) in zip(cells[5:], expected_measures(row), strict=True):
        parsed = parse_measure(cell)
        if value is None:
            assert parsed is None, cell
            continue
        assert parsed is not None, cell
        for printed, exact in zip(parsed, (value, low, high), strict=True):
            if math.isnan(exact):
                assert math.isnan(printed), cell
            else:
                assert abs(printed - exact) <= 0.005 + 1e-9, (cell, value, low, high)


def markdown_rows(text: str) -> list[list[str]]:
    """Every table line's cells, the separator line left out, Markdown's escapes undone."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([re.sub(r"\\(.)", r"\1", cell.strip()) for cell in cells])
    return rows


def latex_rows(text: str) -> list[list[str]]:
    """The cells of the lines between \\midrule and \\bottomrule (the body)."""
    body = text.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)&", line.removesuffix(r"\\").strip())]
        for line in body.strip().splitlines()
    ]


def test_the_markdown_tables_numbers_are_the_reports(report: StudyReport, hand: HandStudy) -> None:
    text = markdown_table(report, provenance_of(hand.study))

    header, *rows = markdown_rows(text)
    assert header[FIXED_COLUMNS:] == [
        "Agreement attacked",
        f"Agreement {SPECIAL_MODEL}",
        "Error consistency attacked",
        f"Error consistency {SPECIAL_MODEL}",
    ]
    assert [row[0] for row in rows] == [SPECIAL_SETTING, "pgd-0.3"]
    assert [row[2] for row in rows] == ["L∞ 0.1", "L∞ 0.3"]
    for cells, entry in zip(rows, report.settings, strict=True):
        assert len(cells) == len(header)
        assert_row_is_the_reports(cells, entry.summary)
    # A hand-worked number, so that a table and report wrong together would still fail:
    # of setting b's three examples with a majority (b4's is "can't tell"), all changed.
    assert rows[1][5].startswith("1.00 [")


def test_the_latex_tables_numbers_are_the_reports(report: StudyReport, hand: HandStudy) -> None:
    text = latex_table(report, provenance_of(hand.study))

    rows = latex_rows(text)
    assert [row[0] for row in rows] == [r"pgd\_0.1 \& 50\% \#1", "pgd-0.3"]
    assert [row[2] for row in rows] == [r"$\ell_\infty$ 0.1", r"$\ell_\infty$ 0.3"]
    for cells, entry in zip(rows, report.settings, strict=True):
        assert len(cells) == FIXED_COLUMNS + 4
        assert_row_is_the_reports(cells, entry.summary)


def _without_math(line: str) -> str:
    return re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", line)


def test_the_latex_has_the_shape_that_compiles(report: StudyReport, hand: HandStudy) -> None:
    text = latex_table(report, provenance_of(hand.study))
    lines = text.splitlines()

    unescaped = text.replace("\\{", "").replace("\\}", "")
    assert unescaped.count("{") == unescaped.count("}")
    depth = 0
    for character in unescaped:
        depth += {"{": 1, "}": -1}.get(character, 0)
        assert depth >= 0
    rules = [line for line in lines if line in ("\\toprule", "\\midrule", "\\bottomrule")]
    assert rules == ["\\toprule", "\\midrule", "\\bottomrule"]
    assert re.findall(r"\\(begin|end)\{([\w*]+)\}", text) == [
        ("begin", "table*"),
        ("begin", "tabular"),
        ("end", "tabular"),
        ("end", "table*"),
    ]
    assert "\\resizebox{\\linewidth}{!}{%\n\\begin{tabular}" in text
    columns = re.search(r"\\begin\{tabular\}\{(\w+)\}", text)
    assert columns
    assert len(columns[1]) == FIXED_COLUMNS + 4
    table_lines = lines[lines.index("\\toprule") + 1 : lines.index("\\bottomrule")]
    for line in (line for line in table_lines if line != "\\midrule"):
        assert line.endswith(r" \\")
        assert len(re.findall(r"(?<!\\)&", line)) == len(columns[1]) - 1, line
    for line in lines[1:]:  # the first is a comment, and resizebox's line ends in one
        bare = _without_math(line).replace(" & ", "").removesuffix("{%")
        assert not re.search(r"(?<!\\)[_%#&]", bare), line
    assert r"Agreement robust\_v2" in text


def test_the_caption_holds_the_provenance(report: StudyReport, hand: HandStudy) -> None:
    for text in (
        markdown_table(report, provenance_of(hand.study)),
        latex_table(report, provenance_of(hand.study)),
    ):
        caption = next(
            line for line in text.splitlines() if line.startswith(("Table: ", "\\caption{"))
        )
        assert re.search(r"Hand-worked study(”|'') \(id", caption)
        assert f"(id {hand.study.pk})" in caption
        # The third participant is excluded by the study's rule, and left out.
        assert "2 participants with analysed labels, 16 labels, 3 labels per item" in caption
        assert "excluded participants left out" in caption
        assert "analysed 2026-12-07 21:30 UTC" in caption
        assert code_version().replace("_", "\\_") in caption or code_version() in caption
        assert "models: attacked, robust" in caption
        assert f"{REPLICATES} bootstrap replicates" in caption


def test_an_unknown_format_is_refused_with_a_sentence(report: StudyReport, hand: HandStudy) -> None:
    with pytest.raises(UnknownFormat, match="markdown or latex, not 'html'"):
        paper_table(report, provenance_of(hand.study), "html")


def test_a_study_without_labels_says_so(researcher: User, researcher_client: Client) -> None:
    model = make_model("attacked")
    setting = make_setting("pgd-0.3", 0.3, model, [(1, 7), (2, 3)])
    study = create_study(
        owner=researcher,
        title="Nobody yet",
        instructions="Which digit?",
        samples=[SettingSample(setting, 2)],
        controls=None,
        items_per_participant=2,
        labels_per_item=2,
    )
    report = study_report(study, bootstrap_replicates=REPLICATES)

    markdown = markdown_table(report, provenance_of(study))
    latex = latex_table(report, provenance_of(study))

    assert markdown.startswith(NO_LABELS)
    assert "0 participants with analysed labels, 0 labels" in markdown
    header, row = markdown_rows(markdown)
    assert row[3:5] == ["2", "0"]
    assert row[5:] == ["—"] * (len(header) - 5)
    assert NO_LABELS in latex
    page = researcher_client.get(f"/researcher/studies/{study.pk}/analysis/paper-table/")
    assert page.status_code == 200
    assert NO_LABELS in page.content.decode()


# The views: the page, its downloads and the API.


def _lines_but_caption(text: str) -> list[str]:
    """The table without the caption, whose time of analysis differs from call to call."""
    return [line for line in text.splitlines() if not line.startswith(("Table: ", "\\caption{"))]


def test_the_page_shows_both_tables_and_links_their_downloads(
    hand: HandStudy, researcher_client: Client
) -> None:
    base = f"/researcher/studies/{hand.study.pk}/analysis/"

    analysis = researcher_client.get(base).content.decode()
    page = researcher_client.get(f"{base}paper-table/")
    markdown = researcher_client.get(f"{base}paper-table/download?format=markdown")
    latex = researcher_client.get(f"{base}paper-table/download?format=latex")

    assert f'href="{base}paper-table/"' in analysis
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-format="markdown"' in html
    assert 'data-format="latex"' in html
    assert "\\toprule" in html
    assert "pgd\\_0.1 \\&amp; 50\\% \\#1" in html
    assert f'href="{base}paper-table/download?format=latex"' in html
    assert markdown.status_code == 200
    assert markdown["Content-Type"] == "text/markdown; charset=utf-8"
    assert f"study-{hand.study.pk}-paper-table.md" in markdown["Content-Disposition"]
    assert latex["Content-Type"] == "text/x-tex; charset=utf-8"
    assert f"study-{hand.study.pk}-paper-table.tex" in latex["Content-Disposition"]
    report = study_report(hand.study)  # the page's own: 1000 replicates, seed 0
    expected = latex_table(report, provenance_of(hand.study))
    assert _lines_but_caption(latex.content.decode()) == _lines_but_caption(expected)


def test_the_page_counts_excluded_participants_when_asked(
    hand: HandStudy, researcher_client: Client
) -> None:
    url = f"/researcher/studies/{hand.study.pk}/analysis/paper-table/download"

    text = researcher_client.get(f"{url}?format=markdown&include_excluded=1").content.decode()

    assert "3 participants with analysed labels, 24 labels" in text
    assert "excluded participants included" in text


def test_an_unknown_format_is_a_400_with_a_sentence(
    hand: HandStudy, researcher_client: Client, researcher: User
) -> None:
    url = f"/researcher/studies/{hand.study.pk}/analysis/paper-table/download"

    page = researcher_client.get(f"{url}?format=html")
    missing = researcher_client.get(url)
    api = token_client(researcher).get(f"/api/v1/studies/{hand.study.pk}/paper-table/?format=html")

    assert page.status_code == 400
    assert page.content.decode() == "The paper table's format is markdown or latex, not 'html'."
    assert missing.status_code == 400
    assert "none was given" in missing.content.decode()
    assert api.status_code == 400
    assert api.json() == {"format": ["The paper table's format is markdown or latex, not 'html'."]}


def test_the_api_answers_the_owner_with_the_reports_table(
    hand: HandStudy, report: StudyReport, researcher: User
) -> None:
    client = token_client(researcher)
    url = f"/api/v1/studies/{hand.study.pk}/paper-table/?bootstrap_replicates={REPLICATES}&seed=0"

    markdown = client.get(f"{url}&format=markdown")
    latex = client.get(f"{url}&format=latex")

    assert markdown.status_code == 200, markdown.content[:300]
    assert markdown["Content-Type"] == "text/markdown; charset=utf-8"
    assert latex["Content-Type"] == "text/x-tex; charset=utf-8"
    provenance = provenance_of(hand.study)
    assert _lines_but_caption(markdown.content.decode()) == _lines_but_caption(
        markdown_table(report, provenance)
    )
    assert _lines_but_caption(latex.content.decode()) == _lines_but_caption(
        latex_table(report, provenance)
    )
    assert "UTC with advstudy" in markdown.content.decode()


def test_another_researcher_gets_404_from_page_download_and_api(
    hand: HandStudy, outsider: User
) -> None:
    client = Client()
    client.force_login(outsider)
    base = f"/researcher/studies/{hand.study.pk}/analysis/paper-table/"

    page = client.get(base)
    download = client.get(f"{base}download?format=markdown")
    api = token_client(outsider).get(f"/api/v1/studies/{hand.study.pk}/paper-table/?format=latex")

    assert [page.status_code, download.status_code, api.status_code] == [404, 404, 404]
    assert "Hand-worked" not in page.content.decode() + download.content.decode()


def test_a_viewer_of_the_study_reads_the_table(hand: HandStudy, outsider: User) -> None:
    add_collaborator(hand.study, outsider.username, "view", by=hand.study.owner)
    client = token_client(outsider)

    response = client.get(f"/api/v1/studies/{hand.study.pk}/paper-table/?format=markdown")

    assert response.status_code == 200
