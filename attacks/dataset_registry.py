"""Registered datasets as the engine and the forms see them.

The engine never imports Django: ``attacks/apps.py`` installs ``registered_spec`` as the
engine's dataset resolver, so that ``DATASETS[name]`` (and so ``load_dataset``, model
building, imports, generation jobs, predictions and the study's answers) finds a
registered dataset by its name as it finds MNIST. Who may *choose* one is decided here:
its owner, superusers, and everyone for a public one (no owner: a command's import),
as for models (attacks/queries.py); a setting or model made on it is shared as usual.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.db.models import Q, QuerySet
from django.db.models.fields.files import FieldFile
from django.forms import ChoiceField, Form
from django.http import Http404

from attacks.dataset_imports import NAME_PATTERN
from attacks.engine.datasets import (
    DATASET_NAMES,
    DatasetSpec,
    ImageDataset,
    read_stored_split,
)
from attacks.models import RegisteredDataset
from attacks.queries import Researcher


def registered_spec(name: str) -> DatasetSpec | None:
    """The engine's spec of a registered dataset; None where no row has that name."""
    if not NAME_PATTERN.match(name):  # no query for what no dataset is called (a NUL, say)
        return None
    row = RegisteredDataset.objects.filter(name=name).prefetch_related("splits").first()
    if row is None:
        return None
    splits = {split.split: split for split in row.splits.all()}
    classes = tuple(row.classes)

    def load(directory: Path, split: str) -> ImageDataset | None:
        stored = splits.get(split)
        if stored is None:
            return None
        images, labels = local_path(stored.images), local_path(stored.labels)
        return read_stored_split(name, split, images, labels, classes)

    return DatasetSpec(classes, row.channels, row.size, load, stored=True)


def local_path(field: FieldFile) -> Path:
    """A local path of a stored file: the storage's own on a local disk, else a copy
    fetched once into this host's cache (object storage has no paths; names are new for
    every import, so a cached copy is never stale)."""
    name = str(field.name)
    try:
        return Path(field.storage.path(name))
    except NotImplementedError:
        pass
    cached = Path(tempfile.gettempdir()) / "advstudy-datasets" / Path(name).name
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        with field.storage.open(name, "rb") as source, partial.open("wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        partial.replace(cached)
    return cached


def datasets_for(user: Researcher) -> QuerySet[RegisteredDataset]:
    """The registered datasets ``user`` may choose: theirs and the public ones (all, for a
    superuser)."""
    if getattr(user, "is_superuser", False):
        return RegisteredDataset.objects.all()
    if user is None or user.pk is None:
        return RegisteredDataset.objects.filter(created_by__isnull=True)
    return RegisteredDataset.objects.filter(Q(created_by__isnull=True) | Q(created_by=user.pk))


def dataset_for(user: Researcher, dataset_id: int) -> RegisteredDataset:
    """The registered dataset if ``user`` may see it; 404 otherwise."""
    found = datasets_for(user).filter(pk=dataset_id).first()
    if found is None:
        raise Http404("no such dataset")
    return found


def dataset_choices(user: Researcher) -> list[tuple[str, str]]:
    """The built-in datasets, then the registered ones ``user`` may choose."""
    registered = datasets_for(user).values_list("name", flat=True)
    return [(name, name) for name in (*DATASET_NAMES, *registered)]


def datasets_without_train(user: Researcher) -> list[str]:
    """The registered datasets ``user`` may choose that have no train split: the
    invariance attacks draw their neighbours from it, so they cannot run there."""
    rows = datasets_for(user).exclude(splits__split="train")
    return list(rows.values_list("name", flat=True))


def offer_datasets(form: Form, researcher: Researcher) -> None:
    """Let ``form``'s dataset field offer the registered datasets ``researcher`` may use
    (another's is "not one of the choices"), and say which lack a train split."""
    field = form.fields["dataset"]
    assert isinstance(field, ChoiceField)
    titles = dict(field.choices)  # type: ignore[arg-type]
    field.choices = [(name, titles.get(name, title)) for name, title in dataset_choices(researcher)]
    without = datasets_without_train(researcher)
    if without:
        note = (
            f"{', '.join(without)} {'has' if len(without) == 1 else 'have'} no train split: "
            "the invariance attacks draw their neighbours from one"
        )
        field.help_text = f"{field.help_text}; {note}" if field.help_text else note


def missing_neighbour_pool(
    dataset: str, attack_name: str | None, config: dict[str, object] | None
) -> str | None:
    """Why an invariance attack cannot run on ``dataset``: its pool split (the train
    split unless the config says otherwise) is not registered. None: it can, or it is no
    invariance attack, or the dataset is a built-in one (checked with the source range)."""
    from attacks.engine.attacks import get_attack_class

    if not attack_name or get_attack_class(attack_name).kind != "invariance":
        return None
    pool = str((config or {}).get("pool_split", "train"))
    row = RegisteredDataset.objects.filter(name=dataset).first()
    if row is None or row.splits.filter(split=pool).exists():
        return None
    return (
        f"{dataset} has no {pool} split, and {attack_name} draws its neighbours from it: "
        f"register its {pool} split on the Register a dataset page first."
    )
