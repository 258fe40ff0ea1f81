"""Classifiers, attack settings, generation jobs and the examples they produce."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

# Not ``settings.AUTH_USER_MODEL`` inside the classes: there ``settings`` reads, for type
# checkers, as ClassifierModel's reverse relation of that name.
USER_MODEL = settings.AUTH_USER_MODEL


def opaque_png_name(instance: object, filename: str) -> str:
    """A random file name: nothing about the example can be read from it (rule 2 of
    docs/architecture.md)."""
    return f"examples/{uuid.uuid4().hex}.png"


def weights_name(instance: object, filename: str) -> str:
    suffix = next((s for s in (".pt2", ".safetensors") if filename.endswith(s)), ".pt")
    return f"weights/{uuid.uuid4().hex}{suffix}"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Stopped by a researcher: a worker skips it, or stops after the chunk it is on.
    CANCELLED = "cancelled"


class WeightsFormat(models.TextChoices):
    """How a model's file loads (attacks/engine/model_files.py); only advstudy's own
    trained and shipped weights are a pickled state dict (read with weights_only)."""

    STATE_DICT = "state_dict", "state dict written by advstudy"
    TORCH_EXPORT = "torch_export", "torch.export program"
    TORCHSCRIPT = "torchscript", "TorchScript"
    SAFETENSORS = "safetensors", "safetensors state dict"


class ClassifierModel(models.Model):
    """A trained or registered classifier; its row is also the state of its training job.

    A registered model came from a researcher's file (attacks/registration.py): its
    ``weights_format`` says how it loads, ``architecture_source`` where a safetensors
    state dict's architecture comes from, and ``normalization`` the (mean, std) applied
    inside the model, so that every caller gives it images in [0, 1].
    """

    name = models.CharField(max_length=100, unique=True)
    architecture = models.CharField(max_length=50)
    dataset = models.CharField(max_length=50)
    training_split = models.CharField(max_length=20)
    training_start = models.PositiveIntegerField()
    training_stop = models.PositiveIntegerField()
    training_config = models.JSONField(default=dict)
    weights = models.FileField(upload_to=weights_name, blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    weights_format = models.CharField(
        max_length=20, choices=WeightsFormat.choices, default=WeightsFormat.STATE_DICT
    )
    architecture_source = models.CharField(
        max_length=20, blank=True, help_text="advstudy, torchvision or timm; blank: in the file"
    )
    normalization = models.JSONField(
        default=dict, blank=True, help_text='{"mean": [...], "std": [...]}, applied in the model'
    )
    clean_accuracy = models.FloatField(null=True, blank=True)
    robust_accuracy = models.FloatField(
        null=True, blank=True, help_text="Under L-inf PGD, as set in evaluation_config"
    )
    certified_accuracy = models.FloatField(
        null=True, blank=True, help_text="IBP-certified at the evaluation eps, where it applies"
    )
    evaluation_config = models.JSONField(default=dict)
    evaluation_split = models.CharField(max_length=20, blank=True)
    evaluation_start = models.PositiveIntegerField(null=True, blank=True)
    evaluation_stop = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    worker_host = models.CharField(max_length=255, blank=True)
    # A row without an owner is public (attacks/queries.py): a researcher who owns rows
    # cannot be deleted until they are handed over, or they would become everyone's.
    created_by = models.ForeignKey(USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_ready(self) -> bool:
        return self.status == JobStatus.SUCCEEDED

    @property
    def is_registered(self) -> bool:
        """Came from a researcher's file, not from advstudy's training or zoo."""
        return self.weights_format != WeightsFormat.STATE_DICT


class Norm(models.TextChoices):
    LINF = "linf", "L-inf"
    L2 = "l2", "L2"
    L0 = "l0", "L0"


class AttackSetting(models.Model):
    """One attack with its full configuration, source images and target model.

    ``norm`` and ``eps`` are the perturbation budget, read from the attack's config
    when the setting is made, or the budget an import claims; both null where none
    applies (clean controls, an import that claims none). ``family`` names the
    imported sets that a researcher says differ only in eps: nothing else tells
    that two published files were made by one method (analysis/report/families.py).
    """

    class Kind(models.TextChoices):
        SENSITIVITY = "sensitivity"
        INVARIANCE = "invariance"
        CLEAN = "clean"
        # Examples someone else published, read from a file (attacks/imports.py);
        # such a setting has no attack to run and never gets a generation job.
        IMPORTED = "imported"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    attack_name = models.CharField(max_length=50)
    config = models.JSONField(default=dict, help_text="The attack's full config, defaults included")
    dataset = models.CharField(max_length=50)
    source_split = models.CharField(max_length=20)
    source_start = models.PositiveIntegerField()
    source_stop = models.PositiveIntegerField()
    target_model = models.ForeignKey(
        ClassifierModel, null=True, blank=True, on_delete=models.PROTECT, related_name="settings"
    )
    seed = models.BigIntegerField()
    # Null, not "", where no budget applies: the exports write a missing budget as null.
    norm = models.CharField(max_length=4, choices=Norm.choices, null=True, blank=True)  # noqa: DJ001
    eps = models.FloatField(
        null=True, blank=True, help_text="On the 0-1 pixel scale; for L0, a count of pixels"
    )
    family = models.CharField(
        max_length=60,
        blank=True,
        help_text="Imported sets only: sets the researcher marks as one psychometric family",
    )
    # A row without an owner is public (attacks/queries.py): a researcher who owns rows
    # cannot be deleted until they are handed over, or they would become everyone's.
    created_by = models.ForeignKey(USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(norm__isnull=True, eps__isnull=True) | Q(norm__isnull=False, eps__gt=0),
                name="budget_norm_and_eps_together",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def source_count(self) -> int:
        return self.source_stop - self.source_start


class GenerationJob(models.Model):
    """Generates ``count`` examples at positions [offset, offset + count) of its setting.

    An imported setting has one job too, created already succeeded: it records who
    imported the file, when, and with which code, as a generation job does.
    """

    setting = models.ForeignKey(AttackSetting, on_delete=models.PROTECT, related_name="jobs")
    offset = models.PositiveIntegerField()
    count = models.PositiveIntegerField()
    chunk_size = models.PositiveIntegerField(default=64)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    worker_host = models.CharField(max_length=255, blank=True)
    device = models.CharField(max_length=50, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"job {self.pk} of {self.setting}"

    @property
    def progress(self) -> float:
        return self.done / self.count if self.count else 1.0


class Example(models.Model):
    """One stored 8-bit image, as humans will see it, with everything measured on it."""

    setting = models.ForeignKey(AttackSetting, on_delete=models.PROTECT, related_name="examples")
    # An imported example's job is the import's own (see attacks/imports.py).
    job = models.ForeignKey(GenerationJob, on_delete=models.PROTECT, related_name="examples")
    position = models.PositiveIntegerField(
        help_text="Place in the setting's seeded source order; for an import, the file's order"
    )
    # Null only for an imported set that gives source labels but not source images:
    # with no clean image there is nothing to measure a distance against.
    source_index = models.PositiveIntegerField(null=True, blank=True)
    source_label = models.PositiveSmallIntegerField()
    target_label = models.PositiveSmallIntegerField(null=True, blank=True)
    image = models.FileField(upload_to=opaque_png_name)
    image_sha256 = models.CharField(max_length=64)
    linf_distance = models.FloatField(null=True, blank=True)
    l2_distance = models.FloatField(null=True, blank=True)
    l0_distance = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["setting_id", "position"]
        constraints = [
            # A re-run chunk must never write an example twice (docs/architecture.md, rule 4).
            models.UniqueConstraint(fields=["setting", "position"], name="unique_example_position"),
        ]

    def __str__(self) -> str:
        return f"example {self.pk}"


class Prediction(models.Model):
    """A model's predicted class on an example's stored image."""

    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="predictions")
    model = models.ForeignKey(ClassifierModel, on_delete=models.PROTECT, related_name="predictions")
    label = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["example", "model"], name="unique_prediction"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} predicts {self.label} on example {self.example_id}"


class SharingRole(models.TextChoices):
    VIEW = "view", "View: read it (a setting: also its jobs and examples)"
    EDIT = "edit", "Edit: as view; a setting: also start, cancel or retry its jobs, name its family"


class Collaborator(models.Model):
    """A researcher, or a lab group (a Django auth group), a model or setting is shared with.

    Exactly one of ``user`` and ``group`` is set; a group's role holds for each of its members.
    """

    user = models.ForeignKey(
        USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    role = models.CharField(max_length=10, choices=SharingRole.choices)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=True, group__isnull=False)
                | Q(user__isnull=False, group__isnull=True),
                name="%(class)s_user_or_group",
            ),
        ]

    @property
    def holder(self) -> str:
        """Who it is shared with, as the sharing pages show it."""
        return f"group {self.group}" if self.group_id else str(self.user)


class ModelCollaborator(Collaborator):
    model = models.ForeignKey(
        ClassifierModel, on_delete=models.CASCADE, related_name="collaborators"
    )

    class Meta(Collaborator.Meta):
        ordering = ["model_id", "id"]
        constraints = [
            *Collaborator.Meta.constraints,
            models.UniqueConstraint(fields=["model", "user"], name="unique_model_user"),
            models.UniqueConstraint(fields=["model", "group"], name="unique_model_group"),
        ]

    def __str__(self) -> str:
        return f"{self.holder} may {self.role} model {self.model_id}"


class SettingCollaborator(Collaborator):
    setting = models.ForeignKey(
        AttackSetting, on_delete=models.CASCADE, related_name="collaborators"
    )

    class Meta(Collaborator.Meta):
        ordering = ["setting_id", "id"]
        constraints = [
            *Collaborator.Meta.constraints,
            models.UniqueConstraint(fields=["setting", "user"], name="unique_setting_user"),
            models.UniqueConstraint(fields=["setting", "group"], name="unique_setting_group"),
        ]

    def __str__(self) -> str:
        return f"{self.holder} may {self.role} setting {self.setting_id}"


class GenerationChunk(models.Model):
    """Which worker stored a chunk of a job's positions, and when (docs/architecture.md, rule 3).

    A job's chunks run as separate tasks on any number of GPU workers; a chunk run again
    (a redelivery) updates its row rather than adding one.
    """

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="chunks")
    first_position = models.PositiveIntegerField()
    stored = models.PositiveIntegerField(help_text="Examples this run of the chunk stored")
    worker_host = models.CharField(max_length=255)
    device = models.CharField(max_length=50)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        ordering = ["job_id", "first_position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "first_position"], name="unique_chunk_position"),
        ]

    def __str__(self) -> str:
        return f"chunk {self.first_position} of job {self.job_id} on {self.worker_host}"


def dataset_file_name(instance: object, filename: str) -> str:
    """A new name for every stored split file: a worker caches a split by its path."""
    return f"datasets/{uuid.uuid4().hex}-{filename}"


class RegisteredDataset(models.Model):
    """A researcher's own images, imported from an ImageFolder (attacks/dataset_imports.py).

    Chosen by ``name`` wherever a built-in dataset is (``AttackSetting.dataset``,
    ``ClassifierModel.dataset``): ``attacks.datasets`` hands the engine its spec. Images
    are ``channels`` x ``size`` x ``size``; ``classes`` are the class folders' names,
    sorted as torchvision's ImageFolder sorts them, so a label is an index into them.
    """

    name = models.CharField(max_length=50, unique=True)
    classes = models.JSONField(default=list)
    channels = models.PositiveSmallIntegerField()
    size = models.PositiveSmallIntegerField(help_text="Images are size x size pixels")
    # A row without an owner is public (attacks/queries.py), as a command's import is.
    created_by = models.ForeignKey(USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DatasetSplit(models.Model):
    """One split of a registered dataset: its pixels and labels as ``.npy`` files, the
    files' names in index order, and where they came from (docs/architecture.md, rule 3)."""

    dataset = models.ForeignKey(RegisteredDataset, on_delete=models.CASCADE, related_name="splits")
    split = models.CharField(max_length=20)
    images = models.FileField(upload_to=dataset_file_name, help_text="uint8 (N, C, H, W) .npy")
    labels = models.FileField(upload_to=dataset_file_name, help_text="int64 (N,) .npy")
    file_names = models.FileField(
        upload_to=dataset_file_name, help_text="the source file of each index, one a line"
    )
    count = models.PositiveIntegerField()
    class_counts = models.JSONField(default=list, help_text="Images per class, in class order")
    source_name = models.CharField(max_length=255, help_text="The zip's or folder's name")
    source_kind = models.CharField(max_length=10, help_text="zip or folder")
    # For a zip, of the file; for a folder, of its sha256sum listing (attacks/dataset_imports.py).
    archive_sha256 = models.CharField(max_length=64)
    resized_to = models.PositiveSmallIntegerField(null=True, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    imported_by = models.ForeignKey(USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset_id", "split"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "split"], name="unique_dataset_split"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset}/{self.split}"


def dataset_upload_name(instance: object, filename: str) -> str:
    """A private name for an uploaded zip until its import job has read it."""
    return f"dataset-uploads/{uuid.uuid4().hex}.zip"


class DatasetImportJob(models.Model):
    """A zip uploaded on the *Register a dataset* page, imported by a worker
    (attacks/dataset_import_jobs.py): the page returns at once, and this row holds the
    job's state, its progress in images and, once done, the split it registered.

    The stored zip is deleted when the job succeeds or fails.
    """

    name = models.CharField(max_length=50)
    split = models.CharField(max_length=20)
    resize = models.PositiveSmallIntegerField(null=True, blank=True)
    archive = models.FileField(upload_to=dataset_upload_name, blank=True)
    archive_name = models.CharField(max_length=255, help_text="The uploaded file's own name")
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    done = models.PositiveIntegerField(default=0, help_text="Images decoded so far")
    total = models.PositiveIntegerField(default=0, help_text="Images in the zip; 0 until counted")
    error = models.TextField(blank=True)
    result = models.ForeignKey(
        DatasetSplit, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    worker_host = models.CharField(max_length=255, blank=True)
    # Never public: the dataset it makes is its maker's, so it goes with them.
    created_by = models.ForeignKey(USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"import {self.pk} of {self.name}/{self.split}"

    @property
    def progress(self) -> float:
        if self.status == JobStatus.SUCCEEDED:
            return 1.0
        return self.done / self.total if self.total else 0.0
