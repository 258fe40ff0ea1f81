"""A study: which examples humans label, how many labels each gets, and by whom."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from attacks.models import Example

CANT_TELL = -1  # the label value of "none / can't tell"


def new_token() -> str:
    return secrets.token_urlsafe(16)


def new_completion_code() -> str:
    return secrets.token_hex(4).upper()


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        LIVE = "live"
        CLOSED = "closed"

    title = models.CharField(max_length=200)
    instructions = models.TextField()
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    label_choices = models.JSONField(help_text='[{"value": 0, "text": "0"}, ...]')
    items_per_participant = models.PositiveIntegerField()
    labels_per_item = models.PositiveIntegerField()
    seed = models.BigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.LIVE)
    join_token = models.CharField(max_length=64, unique=True, default=new_token)
    completion_code = models.CharField(max_length=32, default=new_completion_code)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.title

    @property
    def allowed_values(self) -> set[int]:
        return {int(choice["value"]) for choice in self.label_choices}


class StudyItem(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="study_items")
    is_control = models.BooleanField(default=False)
    # Seeded random order in which items are handed out among the least-labelled.
    shuffle_key = models.PositiveIntegerField()
    # Active leases plus labels: never above the study's labels_per_item.
    assigned_count = models.PositiveIntegerField(default=0)
    labelled_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["study_id", "shuffle_key"]
        constraints = [
            models.UniqueConstraint(fields=["study", "example"], name="unique_study_example"),
        ]
        indexes = [models.Index(fields=["study", "assigned_count", "shuffle_key"])]

    def __str__(self) -> str:
        return f"item {self.pk} of study {self.study_id}"
