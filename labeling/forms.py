from __future__ import annotations

from django import forms

_ONE_HOUR_MS = 3_600_000.0


class LabelForm(forms.Form):
    assignment = forms.UUIDField()
    value = forms.IntegerField(min_value=-1, max_value=1000)
    client_key = forms.UUIDField()
    client_response_ms = forms.FloatField(min_value=0.0, max_value=_ONE_HOUR_MS, required=False)
