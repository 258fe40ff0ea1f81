"""A stored config shown as the JSON a researcher types into the forms, not as a Python dict."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
