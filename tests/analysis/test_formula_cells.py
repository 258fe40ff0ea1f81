"""A researcher's text that a spreadsheet would run as a formula reaches every CSV as text.

OWASP's rule (config/spreadsheets.py): a text cell starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading single quote; numbers keep their sign.
Built on the hand-worked study of tests/analysis/report_study.py, with one setting and
one model renamed to formulas.
"""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pytest

from analysis.charts import ChartTable, table_csv
from analysis.exports import ExportRequest, export_bytes
from attacks.models import AttackSetting, ClassifierModel
from config.spreadsheets import text_cell, text_cells
from labeling.models import Label
from tests.analysis.report_study import HandStudy, build_hand_study

FORMULA = '=HYPERLINK("http://x","y")'
MODEL_FORMULA = "@SUM(1+1)"


@pytest.fixture
def hand(researcher) -> HandStudy:
    hand = build_hand_study(researcher)
    AttackSetting.objects.filter(pk=hand.settings["a"].pk).update(name=FORMULA)
    ClassifierModel.objects.filter(pk=hand.models["robust"].pk).update(name=MODEL_FORMULA)
    return hand


def rows(data: bytes | str) -> list[dict[str, str]]:
    text = data.decode() if isinstance(data, bytes) else data
    return list(csv.DictReader(io.StringIO(text)))


def export_csv(hand: HandStudy, table: str) -> list[dict[str, str]]:
    return rows(b"".join(export_bytes(hand.study, ExportRequest(table, "csv"))))


def test_every_risky_start_is_quoted_and_nothing_else() -> None:
    texts = ["=1+1", "+1", "-1", "@A1", "\tx", "\rx", "pgd-0.1", "a=b", "", "'=x"]
    expected = ["'=1+1", "'+1", "'-1", "'@A1", "'\tx", "'\rx", "pgd-0.1", "a=b", "", "'=x"]
    assert [text_cell(text) for text in texts] == expected
    assert text_cells(pa.array([*texts, None])).to_pylist() == [*expected, None]


def test_a_formula_setting_is_text_in_the_annotations_export(hand: HandStudy) -> None:
    # Given a label whose client time is negative (a number, never a formula)
    label = Label.objects.filter(item__study=hand.study).order_by("id").first()
    assert label is not None
    Label.objects.filter(pk=label.pk).update(client_response_ms=-1.5)

    annotations = export_csv(hand, "annotations")

    settings = {row["setting"] for row in annotations}
    assert settings == {f"'{FORMULA}", "pgd-0.3"}
    first = next(row for row in annotations if row["label_id"] == str(label.pk))
    assert first["client_response_ms"] == "-1.5"


def test_a_formula_setting_is_text_in_the_examples_export(hand: HandStudy) -> None:
    examples = export_csv(hand, "examples")

    assert {row["setting"] for row in examples} == {f"'{FORMULA}", "pgd-0.3"}
    assert {row["attack_name"] for row in examples} == {"pgd_linf"}
    assert {row["setting_eps"] for row in examples} == {"0.1", "0.3"}


def test_formula_names_are_text_in_the_chart_csvs(hand: HandStudy, researcher_client) -> None:
    base = f"/researcher/studies/{hand.study.pk}/dashboard/charts"

    rates = rows(researcher_client.get(f"{base}/rates.csv").content)
    agreement = rows(researcher_client.get(f"{base}/agreement.csv").content)

    assert {row["setting"] for row in rates} == {f"'{FORMULA}", "pgd-0.3"}
    assert {row["model"] for row in agreement} == {f"'{MODEL_FORMULA}", "attacked"}


def test_chart_numbers_keep_their_sign() -> None:
    table = ChartTable(("name", "value", "count"), (("-x", -1.5, -2), ("ok", None, 0)))

    assert rows(table_csv(table)) == [
        {"name": "'-x", "value": "-1.5", "count": "-2"},
        {"name": "ok", "value": "", "count": "0"},
    ]
