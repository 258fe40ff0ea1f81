"""Participants, the items they hold (leased), and the labels they give."""

from __future__ import annotations

import uuid

from django.db import models

from study.models import Study, StudyItem


class Participant(models.Model):
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="participants")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    excluded = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"participant {self.pk} of study {self.study_id}"


class Assignment(models.Model):
    """An item leased to one participant; the lease returns it to the pool if it expires."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        LABELLED = "labelled"
        EXPIRED = "expired"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="assignments"
    )
    item = models.ForeignKey(StudyItem, on_delete=models.PROTECT, related_name="assignments")
    # The opaque id an annotator's page and image URL carry (core rule 2).
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    served_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            # No participant ever sees an item twice.
            models.UniqueConstraint(fields=["participant", "item"], name="unique_assignment"),
        ]
        indexes = [models.Index(fields=["status", "lease_expires_at"])]

    def __str__(self) -> str:
        return f"assignment {self.pk}"


class Label(models.Model):
    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="label")
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="labels")
    item = models.ForeignKey(StudyItem, on_delete=models.PROTECT, related_name="labels")
    value = models.SmallIntegerField(help_text="A class index, or -1 for none / can't tell")
    # Sent by the page with each submission: a re-sent request carries the same key.
    client_key = models.UUIDField()
    client_response_ms = models.FloatField(
        null=True, blank=True, help_text="Measured in the browser"
    )
    server_response_ms = models.PositiveIntegerField(help_text="From serving to receiving")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "item"], name="unique_label"),
            models.UniqueConstraint(
                fields=["participant", "client_key"], name="unique_label_client_key"
            ),
        ]

    def __str__(self) -> str:
        return f"label {self.pk}"
