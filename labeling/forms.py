from __future__ import annotations

import re
from typing import Any

from django import forms

from labeling import services
from labeling.models import Label, Participant

_ONE_HOUR_MS = 3_600_000.0
# What people put between a lab code's characters: spaces, dashes (and their typographic
# kin that phones substitute), dots, underscores.
_CODE_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212._]+")


class LabelForm(forms.Form):
    """One answer, from the page's plain form (no JavaScript) or as JSON from its script."""

    assignment = forms.UUIDField()
    value = forms.IntegerField(min_value=-1, max_value=1000, required=False)
    client_key = forms.UUIDField()
    client_response_ms = forms.FloatField(min_value=0.0, max_value=_ONE_HOUR_MS, required=False)
    # Timed presentation: the page saw the deadline pass with no answer.
    timed_out = forms.BooleanField(required=False)
    # Timed presentation: the image's time on screen, measured by the page from frame times.
    exposure_ms = forms.FloatField(min_value=0.0, max_value=_ONE_HOUR_MS, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("value") is None and not data.get("timed_out"):
            raise forms.ValidationError("choose an answer")
        if data.get("value") is not None and data.get("timed_out"):
            raise forms.ValidationError("an answer cannot also be a timeout")
        return data

    def answer(self) -> services.Answer:
        """The valid answer, for ``services.answer_and_continue``."""
        data = self.cleaned_data
        return services.Answer(
            assignment_id=data["assignment"],
            value=data["value"],
            client_key=data["client_key"],
            client_response_ms=data["client_response_ms"],
            timed_out=bool(data["timed_out"]),
            exposure_ms=data["exposure_ms"],
        )

    def submit(self, participant: Participant) -> Label:
        """Store the valid, non-timeout answer (idempotent by its client key)."""
        data = self.cleaned_data
        return services.submit_label(
            participant,
            data["assignment"],
            data["value"],
            data["client_key"],
            data["client_response_ms"],
        )


class ConsentForm(forms.Form):
    choice = forms.ChoiceField(choices=[("agree", "I agree"), ("decline", "I do not agree")])


class LabCodeForm(forms.Form):
    code = forms.CharField(
        max_length=64,  # room for the dashes and spaces a printed code is read with
        label="Your code",
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "autocapitalize": "characters",
                "autofocus": True,
                "spellcheck": "false",
                "aria-describedby": "code-help",
            }
        ),
    )

    def clean_code(self) -> str:
        """The code as generated: upper case, no dash or space (study.services makes codes of
        letters and digits only), however it was copied off the paper."""
        typed = self.cleaned_data["code"]
        code = _CODE_SEPARATORS.sub("", typed).upper()
        if not code:
            raise forms.ValidationError("Please type the code you were given.")
        return code
