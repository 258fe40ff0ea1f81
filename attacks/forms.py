from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from attacks.dataset_registry import missing_neighbour_pool, offer_datasets
from attacks.datasets import available_sizes, configured_dataset, dataset_title
from attacks.engine.architectures import architecture_names
from attacks.engine.attacks import (
    AttackConfigError,
    OptionDoc,
    attack_names,
    build_attack,
    describe_options,
    get_attack_class,
)
from attacks.engine.datasets import DATASET_NAMES, DATASETS, SPLITS
from attacks.engine.example_sets import NORMS
from attacks.engine.training import RECIPES
from attacks.models import ClassifierModel, JobStatus, SharingRole
from attacks.queries import Researcher, models_for

_DATASETS = [(name, dataset_title(name)) for name in DATASET_NAMES]
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


def check_range(
    form: forms.Form, dataset: str, prefix: str, what: str
) -> tuple[str, int, int] | None:
    """Check ``<prefix>_split``, ``_start`` and ``_stop`` against the data on this server,
    each refusal beside the field it is about; the range if it is good, else None."""
    data = form.cleaned_data
    split, start, stop = (data.get(f"{prefix}_{part}") for part in ("split", "start", "stop"))
    if split is None or start is None or stop is None:
        return None
    try:
        size = len(configured_dataset(dataset, split))
    except ValidationError as error:
        # A dataset absent altogether is the dataset's error; a missing split, its field's.
        # Either is said once, however many of the form's ranges it spoils.
        field = f"{prefix}_split" if available_sizes(dataset) else "dataset"
        if not any(error.messages[0] in shown for shown in form.errors.values()):
            form.add_error(field, error)
        return None
    title = dataset_title(dataset)
    if stop > size:
        form.add_error(
            f"{prefix}_stop",
            f"{title}'s {split} split has {size:,} images: the {what} images must end at "
            f"{size:,} or before.",
        )
        return None
    if start >= stop:
        form.add_error(
            f"{prefix}_start",
            f"The {what} images start at {start:,} and end at {stop:,}: the start must come "
            "before the end.",
        )
        return None
    return split, start, stop


def data_present() -> str:
    """The data this server holds, as the training form lists it before a submit."""
    parts = []
    for name in DATASET_NAMES:
        sizes = available_sizes(name)
        if sizes:
            splits = " and ".join(f"{split} ({size:,} images)" for split, size in sizes.items())
            parts.append(f"{dataset_title(name)}: {splits}")
    return "; ".join(parts) or "none"


def _overlap(first: tuple[str, int, int], second: tuple[str, int, int]) -> bool:
    return first[0] == second[0] and first[1] < second[2] and second[1] < first[2]


class TrainModelForm(forms.Form):
    """Train a model on images [start, stop) of one split, evaluated on others.

    The defaults work on what advstudy ships (the MNIST test split alone), as the demo
    does: train on its first 8,000 images, evaluate on the last 2,000.
    """

    name = forms.CharField(max_length=100)
    architecture = forms.ChoiceField(choices=[(n, n) for n in architecture_names()])
    dataset = forms.ChoiceField(choices=_DATASETS)
    training_split = forms.ChoiceField(choices=_SPLITS, initial="test")
    training_start = index_field(min_value=0, initial=0)
    training_stop = index_field(min_value=1, initial=8000)
    evaluation_split = forms.ChoiceField(
        choices=_SPLITS,
        initial="test",
        help_text="held-out images: on the training split, a range apart from the training one",
    )
    evaluation_start = index_field(min_value=0, initial=8000)
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

    def __init__(self, *args: Any, researcher: Researcher = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].help_text = f"data on this server: {data_present()}"
        offer_datasets(self, researcher)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        dataset = data.get("dataset")
        if not dataset:
            return data
        training = check_range(self, dataset, "training", "training")
        evaluation = check_range(self, dataset, "evaluation", "evaluation")
        if training and evaluation and _overlap(training, evaluation):
            self.add_error(
                "evaluation_start",
                f"The evaluation images [{evaluation[1]:,}, {evaluation[2]:,}) overlap the "
                f"training images [{training[1]:,}, {training[2]:,}): evaluate on images "
                "the model was not trained on.",
            )
        return data


@dataclass(frozen=True)
class AttackOptions:
    """An attack's options as the new-setting page lists them, read from its config class."""

    name: str
    title: str
    kind: str
    norm: str | None
    options: list[OptionDoc]


def attack_options() -> list[AttackOptions]:
    return [
        AttackOptions(name, cls.title, cls.kind, cls.norm, describe_options(cls.config_class))
        for name in attack_names()
        for cls in [get_attack_class(name)]
    ]


class AttackSettingForm(forms.Form):
    name = forms.CharField(max_length=100)
    attack_name = forms.ChoiceField(
        choices=[(n, f"{get_attack_class(n).title} ({n})") for n in attack_names()],
        label="Attack",
    )
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
        offer_datasets(self, researcher)

    def clean_config(self) -> dict[str, Any]:
        text = self.cleaned_data.get("config") or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(
                f"The config is not valid JSON: {error.msg.lower()} at line {error.lineno}, "
                f'column {error.colno}. Write it as {{"eps": 0.3, "steps": 40}}.'
            ) from error
        if not isinstance(value, dict):
            raise forms.ValidationError(
                'The config must be a JSON object of options, such as {"eps": 0.3}.'
            )
        attack_name = self.cleaned_data.get("attack_name")
        if attack_name:
            # The engine's own check, so that its refusal shows beside the config.
            try:
                build_attack(attack_name, value)
            except AttackConfigError as error:
                raise forms.ValidationError(str(error)) from error
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        dataset = data.get("dataset")
        if not dataset:
            return data
        self._check_target_class(data, dataset)
        if refusal := missing_neighbour_pool(dataset, data.get("attack_name"), data.get("config")):
            self.add_error("dataset", refusal)
        check_range(self, dataset, "source", "source")
        self._check_target_model(data, dataset)
        return data

    def _check_target_class(self, data: dict[str, Any], dataset: str) -> None:
        target = (data.get("config") or {}).get("target_class")
        if isinstance(target, int) and not isinstance(target, bool):
            classes = DATASETS[dataset].classes
            if not 0 <= target < len(classes):
                named = ", ".join(f"{index} {name}" for index, name in enumerate(classes))
                self.add_error(
                    "config",
                    f"target_class {target} is not a class of {dataset_title(dataset)}; "
                    f"its classes are {named}.",
                )

    def _check_target_model(self, data: dict[str, Any], dataset: str) -> None:
        attack_name, model = data.get("attack_name"), data.get("target_model")
        if attack_name and model is None and get_attack_class(attack_name).needs_model:
            title = get_attack_class(attack_name).title
            self.add_error("target_model", f"{title} needs a target model: choose one.")
        elif model is not None and model.dataset != dataset:
            self.add_error(
                "target_model",
                f"{model.name} was trained on {dataset_title(model.dataset)}, not on "
                f"{dataset_title(dataset)}.",
            )

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
                f"Files of at most {self.MAX_UPLOAD_BYTES // (1024 * 1024)} MB are imported "
                "here; import a larger set with manage.py import_examples."
            )
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("norm") and data.get("eps") is None and "eps" not in self.errors:
            self.add_error("eps", "Give the eps the set claims in its norm, or no norm.")
        elif not data.get("norm") and data.get("eps") is not None:
            self.add_error("norm", "Give the norm the eps is measured in, or no eps.")
        return data
