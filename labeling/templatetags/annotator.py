"""Inline the annotator's stylesheet and script into its pages.

Production serves no static files (gunicorn alone, no collectstatic), and the
annotator's few pages load once per participant: inlining costs little and
leaves nothing to configure. The files live under labeling/static/ so that
editors and linters treat them as CSS and JavaScript.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from django import template
from django.contrib.staticfiles import finders
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.simple_tag
def inline_asset(path: str) -> SafeString:
    # Our own files, never user input: safe to insert as they are.
    return mark_safe(_read(path))


@lru_cache(maxsize=8)
def _read(path: str) -> str:
    found = finders.find(path)
    if not isinstance(found, str):
        raise FileNotFoundError(f"no static file {path}")
    return Path(found).read_text(encoding="utf-8")
