"""Every time a researcher's page shows carries its zone (settings.TIME_ZONE is UTC)."""

from __future__ import annotations

import re
from pathlib import Path

from django.template import Context, Template
from django.utils import timezone

ROOT = Path(__file__).resolve().parents[1]
RESEARCHER_TEMPLATES = ["templates", "attacks/templates", "study/templates", "analysis/templates"]
# A date filter whose format shows a time (H, G, h, g, i) must show its zone too (T, e, O, P).
DATE_FILTER = re.compile(r"""\|date:["']([^"']*)["']""")


def test_no_template_formats_a_time_without_its_zone() -> None:
    bare = [
        f"{path.relative_to(ROOT)}: {fmt}"
        for folder in RESEARCHER_TEMPLATES
        for path in sorted((ROOT / folder).rglob("*.html"))
        for fmt in DATE_FILTER.findall(path.read_text())
        if re.search(r"[HGhgi]", fmt) and not re.search(r"[TeOP]", fmt)
    ]
    assert bare == []


def test_a_datetime_shown_as_it_is_carries_its_zone() -> None:
    moment = timezone.now()

    shown = Template("{{ moment }}|{{ moment|date:'DATETIME_FORMAT' }}").render(
        Context({"moment": moment})
    )

    assert shown == f"{moment:%Y-%m-%d %H:%M} UTC|{moment:%Y-%m-%d %H:%M} UTC"
