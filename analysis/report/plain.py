"""A study's report as plain JSON data, for the REST API: every record's fields, recursively.

Models and settings become their id and name; intervals {low, high}; a measure that is
undefined (NaN) becomes null, as JSON has no NaN. Per-example arrays (the Dawid-Skene
posteriors, fields kept out of ``repr``) are left out: the examples export carries them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from analysis.report.types import StudyReport
from attacks.models import AttackSetting, ClassifierModel

# Records whose headline number is a property (successes / trials), not a field.
_VALUE_PROPERTY = "value"


def report_as_json(report: StudyReport) -> dict[str, Any]:
    plain = _plain(report)
    assert isinstance(plain, dict)
    return plain


def _plain(value: Any) -> Any:
    if isinstance(value, AttackSetting | ClassifierModel):
        return {"id": value.pk, "name": value.name}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _record(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # Interval and other NamedTuples
        return {name: _plain(item) for name, item in zip(value._fields, value, strict=True)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _record(record: Any) -> dict[str, Any]:
    fields = {
        field.name: _plain(getattr(record, field.name))
        for field in dataclasses.fields(record)
        if field.repr
    }
    if isinstance(getattr(type(record), _VALUE_PROPERTY, None), property):
        fields[_VALUE_PROPERTY] = _plain(getattr(record, _VALUE_PROPERTY))
    return fields
