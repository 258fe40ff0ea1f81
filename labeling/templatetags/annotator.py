"""Inline the annotator's stylesheet and script into its pages; the answer buttons.

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
from django.template.loader import get_template
from django.utils.safestring import SafeString, mark_safe

from labeling.queries import MAX_KEYED_CLASSES, Choice
from study.models import CANT_TELL

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


@register.simple_tag(takes_context=True)
def answer_buttons(context: template.Context, disabled: bool = False) -> SafeString:
    """The page's answer buttons (labeling/_answers.html), rendered once per process for
    each study's choices: they are the same on every page of a study, and rendering them
    for every labelling page was most of that page's template work."""
    return _answer_buttons(tuple(context["choices"]), disabled)


@lru_cache(maxsize=256)
def _answer_buttons(choices: tuple[Choice, ...], disabled: bool) -> SafeString:
    # Rendered with autoescaping, as an include would: the study's texts are escaped.
    classes = sum(choice.value != CANT_TELL for choice in choices)
    context = {"choices": choices, "disabled": disabled, "searchable": classes > MAX_KEYED_CLASSES}
    html = get_template("labeling/_answers.html").render(context)
    return mark_safe(html)  # already escaped by the template
