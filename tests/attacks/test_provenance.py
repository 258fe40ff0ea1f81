"""The code version a job records: the image's build argument first, else git."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from attacks.provenance import code_version


@pytest.fixture(autouse=True)
def fresh_version() -> Iterator[None]:
    code_version.cache_clear()
    yield
    code_version.cache_clear()


def test_an_image_records_the_version_it_was_built_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVSTUDY_CODE_VERSION", "v1.2-3-gabc1234-dirty")
    assert code_version() == "v1.2-3-gabc1234-dirty"


def test_a_checkout_records_its_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADVSTUDY_CODE_VERSION", raising=False)
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", code_version())
