"""docs/api.md names the design fields a script may send, with the values of a choice."""

from __future__ import annotations

from pathlib import Path

from study.models import Study

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_api_page_names_the_withdrawal_policy_and_its_values() -> None:
    text = API_DOC.read_text()

    assert "`withdrawal_policy`" in text
    assert all(f'`"{value}"`' in text for value in Study.WithdrawalPolicy.values)
    assert "the default" in text.split("`withdrawal_policy`", 1)[1].split(")", 1)[0]
