"""The engine's tests use it as the library it is, without Django's app around it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from attacks.engine.datasets import DATASETS, set_dataset_resolver


@pytest.fixture(autouse=True)
def engine_without_the_app() -> Iterator[None]:
    """No resolver of registered datasets: the app's reads the database, which these
    tests do not open (an unknown name is then unknown, as for any user of the engine)."""
    installed = DATASETS.resolver
    set_dataset_resolver(None)
    yield
    set_dataset_resolver(installed)
