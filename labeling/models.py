"""Participants, the items they hold (leased), and the labels they give."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from study.models import Study, StudyItem


class Participant(models.Model):
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="participants")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # When they first opened the study's link: for the open link and lab codes, before the
    # consent or code that creates the row (the exports' joined_at).
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    excluded = models.BooleanField(default=False)

    source = models.CharField(
        max_length=20, choices=Study.Recruitment.choices, default=Study.Recruitment.OPEN
    )
    # HMAC of the recruiter's participant id (Prolific PID, MTurk worker id, lab code):
    # one participation per person per study, and no raw id in the database.
    external_id_hash = models.CharField(max_length=64, blank=True)
    # The Prolific or MTurk id itself, encrypted (study/recruiter_ids.py): the owner's payment
    # files need it, and no one reads it from the database without the key.
    external_id_encrypted = models.TextField(blank=True, default="", db_default="")
    # What the recruiter's return trip needs (Prolific STUDY_ID / SESSION_ID; MTurk
    # assignmentId, hitId, turkSubmitTo): no personal data.
    recruiter_session = models.JSONField(default=dict, blank=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    declined_at = models.DateTimeField(null=True, blank=True)  # declined consent: screened out
    instructions_read_at = models.DateTimeField(null=True, blank=True)
    practice_done_at = models.DateTimeField(null=True, blank=True)
    attention_failures = models.PositiveIntegerField(default=0)
    fast_responses = models.PositiveIntegerField(default=0)
    # Why they are excluded, in words a researcher reads: ["failed 2 of 3 attention checks"].
    exclusion_reasons = models.JSONField(default=list, blank=True)
    # They withdrew and the study keeps their answers without their recruiter id or session
    # (Study.withdrawal_policy "anonymise"); under "delete" their row is gone instead.
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "external_id_hash"],
                condition=~models.Q(external_id_hash=""),
                name="one_participation_per_external_id",
            ),
        ]

    def __str__(self) -> str:
        return f"participant {self.pk} of study {self.study_id}"


class Assignment(models.Model):
    """An item leased to one participant; the lease returns it to the pool if it expires."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        LABELLED = "labelled"
        EXPIRED = "expired"  # the lease ran out: the item went back to the pool
        # Timed presentation: no answer before the deadline. A skipped trial: no label,
        # the item's slot goes back to the pool, the participant moves on.
        TIMED_OUT = "timed_out"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="assignments"
    )
    item = models.ForeignKey(StudyItem, on_delete=models.PROTECT, related_name="assignments")
    # The opaque id an annotator's page and image URL carry (docs/architecture.md, rule 2).
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    served_at = models.DateTimeField()  # when the trial started (became the current one)
    lease_expires_at = models.DateTimeField()
    # On the server's clock: when the trial's image was first sent (in the trial's reply, or
    # by the image view) and when its answer or timeout arrived. A timed study's deadline
    # runs from the first (docs/studies.md, "Timing").
    image_sent_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    # Timed presentation: the image's real time on screen, as the browser painted it (from
    # its first frame with the image to its first frame without, requestAnimationFrame's
    # frame times); the exposure asked for is the study's exposure_ms.
    exposure_ms = models.FloatField(null=True, blank=True)

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
    # Timed: the image's measured time on screen, its assignment's exposure_ms copied here
    # so that the exports and the report read labels alone, without joining assignments.
    exposure_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Attention and practice items: whether the answer was the expected one.
    is_correct = models.BooleanField(null=True, blank=True)
    too_fast = models.BooleanField(default=False)

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
