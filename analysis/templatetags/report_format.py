"""How the analysis pages write numbers: 4 decimals, intervals in brackets, a dash for none."""

from __future__ import annotations

import math

from django import template

from analysis.statistics import Interval

register = template.Library()
DASH = "\u2013"


@register.filter
def decimal(value: float | None) -> str:
    """0.1234, or a dash where the measure is undefined."""
    if value is None or math.isnan(value):
        return DASH
    return _unsigned_zero(f"{value:.4f}")


@register.filter
def interval(ends: Interval | None) -> str:
    """[0.123, 0.456], unbounded ends as -inf / inf; empty where undefined."""
    if ends is None or math.isnan(ends.low) or math.isnan(ends.high):
        return ""
    return f"[{_unsigned_zero(f'{ends.low:.3f}')}, {_unsigned_zero(f'{ends.high:.3f}')}]"


def _unsigned_zero(text: str) -> str:
    """ "-0.0000" is a rounding of a tiny negative (-1e-16): write it as 0."""
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


@register.filter
def milliseconds(value: float | None) -> str:
    return DASH if value is None else f"{value:.0f} ms"


@register.filter
def at(values: tuple[object, ...] | list[object], index: int) -> object:
    """values[index], for the categories of a label distribution."""
    return values[index]
