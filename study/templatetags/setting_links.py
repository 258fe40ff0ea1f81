"""A study page names its settings to every reader, but links one only where its page opens.

A study's readers see the names of its settings, whoever owns them; the setting's own
page answers 404 to anyone without access to it (attacks/queries.py), and a link to a
404 tells the reader only that the page is there and not theirs.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.context import Context
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from attacks.models import AttackSetting
from attacks.queries import setting_access

register = template.Library()

_OPENS = "setting_links.opens"  # per render: setting id -> whether the reader may open it


@register.simple_tag(takes_context=True)
def setting_link(context: Context, setting: AttackSetting) -> SafeString:
    """The setting's name, linked to its page if the signed-in reader may open that page."""
    render: Any = context.render_context  # django-stubs types its values as the loaders' own
    opens: dict[int, bool] = render.setdefault(_OPENS, {})
    if setting.pk not in opens:
        request = context.get("request")
        reader = getattr(request, "user", None)
        opens[setting.pk] = setting_access(setting, reader) is not None
    if opens[setting.pk]:
        url = reverse("setting-detail", args=[setting.pk])
        return format_html('<a href="{}">{}</a>', url, setting.name)
    return format_html("{}", setting.name)
