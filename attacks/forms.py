from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import forms

from attacks.engine.architectures import architecture_names
from attacks.engine.attacks import OptionDoc, attack_names, describe_options, get_attack_class
from attacks.engine.datasets import DATASET_NAMES, DATASETS, SPLITS
from attacks.engine.example_sets import NORMS
from attacks.engine.training import RECIPES
from attacks.models import ClassifierModel, JobStatus, SharingRole
from attacks.queries import Researcher, models_for

_DATASETS = [(name, name) for name in DATASET_NAMES]
_SPLITS = [(split, split) for split in SPLITS]

# The largest numbers the columns hold on PostgreSQL (and so on SQLite, whose integers are
# wider): a bigger one must be a 400 that says so, not the database's overflow as a 500.
MAX_BIGINT = 2**63 - 1  # a BigIntegerField: seeds
MAX_INTEGER = 2**31 - 1  # a PositiveIntegerField: source indices, counts, milliseconds


def too_large(maximum: int) -> str:
    """The sentence for a number beyond ``maximum``, the largest its column stores."""
    return f"Ensure this value is at most {maximum}, the largest number the database stores."


def seed_field() -> forms.IntegerField:
    return forms.IntegerField(
        min_value=0,
        max_value=MAX_BIGINT,
        initial=0,
        error_messages={"max_value": too_large(MAX_BIGINT)},
    )


def index_field(*, min_value: int, initial: int) -> forms.IntegerField:
    """A position in a dataset split, stored as a PositiveIntegerField."""
    return forms.IntegerField(
        min_value=min_value,
        max_value=MAX_INTEGER,
        initial=initial,
        error_messages={"max_value": too_large(MAX_INTEGER)},
    )


class TrainModelForm(forms.Form):
    name = forms.CharField(max_length=100)
    architecture = forms.ChoiceField(choices=[(n, n) for n in architecture_names()])
    dataset = forms.ChoiceField(choices=_DATASETS)
    training_split = forms.ChoiceField(choices=_SPLITS, initial="train")
    training_start = index_field(min_value=0, initial=0)
    training_stop = index_field(min_value=1, initial=60000)
    evaluation_split = forms.ChoiceField(choices=_SPLITS, initial="test")
    evaluation_start = index_field(min_value=0, initial=0)
    evaluation_stop = index_field(min_value=1, initial=10000)
    recipe = forms.ChoiceField(choices=[(r, r) for r in RECIPES], initial="standard")
    eps = forms.FloatField(
        min_value=0.001,
        max_value=1.0,
        initial=0.3,
        help_text="L-inf training budget of pgd_at, fgsm_rs and ibp",
    )
    epochs = forms.IntegerField(min_value=1, max_value=1000, initial=2)
    batch_size = forms.IntegerField(min_value=1, max_value=65536, initial=128)
    learning_rate = forms.FloatField(min_value=1e-8, max_value=10.0, initial=1e-3)
    seed = seed_field()


@dataclass(frozen=True)
class AttackOptions:
    """An attack's options as the new-setting page lists them, read from its config class."""

    name: str
    kind: str
    norm: str | None
    options: list[OptionDoc]


def attack_options() -> list[AttackOptions]:
    return [
        AttackOptions(name, cls.kind, cls.norm, describe_options(cls.config_class))
        for name in attack_names()
        for cls in [get_attack_class(name)]
    ]


class AttackSettingForm(forms.Form):
    name = forms.CharField(max_length=100)
    attack_name = forms.ChoiceField(choices=[(n, n) for n in attack_names()])
    config = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        initial="{}",
        required=False,
        help_text="JSON; missing options take defaults",
    )
    dataset = forms.ChoiceField(choices=_DATASETS)
    source_split = forms.ChoiceField(choices=_SPLITS, initial="test")
    source_start = index_field(min_value=0, initial=0)
    source_stop = index_field(min_value=1, initial=10000)
    target_model = forms.ModelChoiceField(queryset=ClassifierModel.objects.none(), required=False)
    seed = seed_field()

    def __init__(self, *args: Any, researcher: Researcher = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        field = self.fields["target_model"]
        assert isinstance(field, forms.ModelChoiceField)
        # Only models the researcher may see: another's model is "not one of the choices".
        field.queryset = models_for(researcher).filter(status=JobStatus.SUCCEEDED)

    def clean_config(self) -> dict[str, Any]:
        text = self.cleaned_data.get("config") or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(f"not valid JSON: {error}") from error
        if not isinstance(value, dict):
            raise forms.ValidationError("the config must be a JSON object")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        target = (data.get("config") or {}).get("target_class")
        dataset = data.get("dataset")
        if dataset and isinstance(target, int) and not isinstance(target, bool):
            classes = DATASETS[dataset].classes
            if not 0 <= target < len(classes):
                named = ", ".join(f"{index} {name}" for index, name in enumerate(classes))
                self.add_error(
                    "config", f"target_class {target} is not a class of {dataset}: {named}"
                )
        return data

    @property
    def attack_options(self) -> list[AttackOptions]:
        """Each attack's options with meaning and default, for the page to list."""
        return attack_options()


def setting_arguments(data: dict[str, Any]) -> dict[str, Any]:
    """``services.create_attack_setting``'s arguments from the form's cleaned data."""
    return {
        "name": data["name"],
        "attack_name": data["attack_name"],
        "config": data["config"],
        "dataset": data["dataset"],
        "source_split": data["source_split"],
        "source_range": (data["source_start"], data["source_stop"]),
        "seed": data["seed"],
        "target_model": data["target_model"],
    }


class ShareForm(forms.Form):
    """Share a model or setting with one researcher or one lab group."""

    username = forms.CharField(max_length=150, required=False, help_text="A researcher's user name")
    group = forms.CharField(max_length=150, required=False, help_text="or a lab group's name")
    role = forms.ChoiceField(choices=SharingRole.choices, initial=SharingRole.VIEW)


class GenerationJobForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=100_000, initial=32)
    chunk_size = forms.IntegerField(min_value=1, max_value=4096, initial=64)


FAMILY_HELP = (
    "imported sets made by one method at several eps: give them one family name to fit "
    "one psychometric curve over them; blank: the set is in no family"
)


class SettingFamilyForm(forms.Form):
    family = forms.CharField(max_length=60, required=False, help_text=FAMILY_HELP)


class ImportExamplesForm(forms.Form):
    MAX_UPLOAD_BYTES = 256 * 1024 * 1024

    file = forms.FileField(
        help_text=".npz with images and source_indices or source_labels (optional "
        "target_labels, -1 = none), or a .zip of 8-bit PNGs plus one CSV: file_name, "
        "source_index and/or source_label, optional target_label"
    )
    name = forms.CharField(max_length=100)
    dataset = forms.ChoiceField(choices=_DATASETS)
    split = forms.ChoiceField(
        choices=_SPLITS, initial="test", help_text="the split the source indices point into"
    )
    citation = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
        required=False,
        help_text="where the set comes from, e.g. Tramèr et al. 2020, released "
        "linf_automated_eps04.npy",
    )
    norm = forms.ChoiceField(
        choices=[("", "no budget claimed"), *((norm, norm) for norm in NORMS)], required=False
    )
    eps = forms.FloatField(
        min_value=0.0,
        required=False,
        help_text="the budget the set claims: 0-1 scale for linf and l2, values changed for l0",
    )
    pixel_scale = forms.TypedChoiceField(
        choices=[("", "infer from the values"), ("1", "0-1"), ("255", "0-255")],
        coerce=int,
        empty_value=None,
        required=False,
        help_text="for float images only",
    )
    family = forms.CharField(
        max_length=60,
        required=False,
        help_text=FAMILY_HELP,
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"files of at most {self.MAX_UPLOAD_BYTES // (1024 * 1024)} MB; import larger "
                "sets with manage.py import_examples"
            )
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("norm")) != (data.get("eps") is not None):
            raise forms.ValidationError("a claimed budget needs both a norm and an eps")
        return data
