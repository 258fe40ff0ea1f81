from __future__ import annotations

from django import forms

from attacks.models import AttackSetting


class StudyForm(forms.Form):
    title = forms.CharField(max_length=200)
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        initial="Which digit do you see? If it is none of them, or you cannot tell, say so.",
    )
    settings = forms.ModelMultipleChoiceField(
        queryset=AttackSetting.objects.exclude(kind=AttackSetting.Kind.CLEAN),
        widget=forms.CheckboxSelectMultiple,
    )
    examples_per_setting = forms.IntegerField(min_value=1, max_value=100_000, initial=20)
    control_setting = forms.ModelChoiceField(
        queryset=AttackSetting.objects.filter(kind=AttackSetting.Kind.CLEAN),
        required=False,
        help_text="Clean images shown as controls",
    )
    control_count = forms.IntegerField(min_value=0, max_value=100_000, initial=10)
    items_per_participant = forms.IntegerField(min_value=1, max_value=10_000, initial=40)
    labels_per_item = forms.IntegerField(min_value=1, max_value=1000, initial=3)
    seed = forms.IntegerField(min_value=0, initial=0)

    def clean(self) -> dict[str, object] | None:
        data = super().clean()
        if data and data.get("control_setting") and not data.get("control_count"):
            self.add_error("control_count", "choose how many controls to show")
        return data
