"""A study: which examples humans label, how many labels each gets, and by whom."""

from __future__ import annotations

import secrets
from decimal import Decimal
from functools import cached_property

from django.conf import settings
from django.db import models
from django.utils import timezone

from attacks.models import Example

CANT_TELL = -1  # the label value of "none / can't tell"


def new_token() -> str:
    return secrets.token_urlsafe(16)


def new_completion_code() -> str:
    return secrets.token_hex(4).upper()


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"  # being designed; only its owner's preview runs
        LIVE = "live"  # open to participants
        PAUSED = "paused"  # no new participants or items; labels of leased items still count
        CLOSED = "closed"  # finished for good

    class Presentation(models.TextChoices):
        UNLIMITED = "unlimited", "Unlimited: the image stays until the answer"
        TIMED = "timed", "Timed: the image for a set time, then a mask"

    class Recruitment(models.TextChoices):
        OPEN = "open", "Open link with anonymous tokens"
        PROLIFIC = "prolific", "Prolific"
        MTURK = "mturk", "Amazon Mechanical Turk (ExternalQuestion)"
        LAB = "lab", "Lab codes handed out in person"

    class ExcludedOutcome(models.TextChoices):
        """What the end gives a participant whose session an exclusion ended."""

        SCREEN_OUT = "screen_out", "The screen-out code (Prolific: screened out)"
        COMPLETION = "completion", "The completion code, as everyone else"
        NO_CODE = "no_code", "No code: a thank-you page only"

    class WithdrawalPolicy(models.TextChoices):
        """What becomes of a participant's answers when they withdraw (the consent page says)."""

        DELETE = "delete", "Delete their answers: their items are offered to others"
        ANONYMISE = "anonymise", "Keep their answers, without anything that identifies them"

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

    consent_text = models.TextField(blank=True)
    # What the annotator pages call the study: never ``title``, which researchers name after
    # their attacks (docs/architecture.md, rule 2). Empty: "Image study".
    public_title = models.CharField(max_length=200, blank=True, db_default="", default="")
    # Shown on the consent page: how long taking part takes, and whom to ask about the study.
    expected_minutes = models.PositiveIntegerField(null=True, blank=True)
    contact = models.CharField(max_length=300, blank=True, db_default="", default="")
    presentation = models.CharField(
        max_length=20, choices=Presentation.choices, default=Presentation.UNLIMITED
    )
    exposure_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Timed: how long the image shows before the mask"
    )
    response_deadline_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Timed: the time to answer, from the image's onset"
    )
    recruitment = models.CharField(
        max_length=20, choices=Recruitment.choices, default=Recruitment.OPEN
    )
    # Prolific: the code for participants who decline consent ("screened out"), and for
    # excluded ones where excluded_outcome says so.
    screen_out_code = models.CharField(max_length=32, default=new_completion_code)
    excluded_outcome = models.CharField(
        max_length=20, choices=ExcludedOutcome.choices, default=ExcludedOutcome.SCREEN_OUT
    )
    withdrawal_policy = models.CharField(
        max_length=20,
        choices=WithdrawalPolicy.choices,
        default=WithdrawalPolicy.DELETE,
        db_default=WithdrawalPolicy.DELETE,
    )
    attention_checks_per_participant = models.PositiveIntegerField(default=0)
    # Whether the instructions tell participants that some images have known answers.
    tells_of_known_answers = models.BooleanField(default=False, db_default=False)
    lease_minutes = models.PositiveIntegerField(default=10)
    # Exclusion rules: a participant is excluded when they fail more attention checks
    # than allowed, or answer faster than min_response_ms more often than allowed.
    max_attention_failures = models.PositiveIntegerField(default=0)
    min_response_ms = models.PositiveIntegerField(default=250)
    max_fast_responses = models.PositiveIntegerField(default=3)
    # No one takes part both in this study and in any of these (the eps 0.3 and eps 0.4
    # studies of one attack): checked at join, both ways, by the recruiter id's HMAC.
    exclude_participants_of = models.ManyToManyField("self", symmetrical=True, blank=True)
    # Bonuses, in the recruiter's currency, for completed participants who are not excluded.
    bonus_per_attention_check = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal(0), db_default=Decimal(0)
    )
    bonus_per_item = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal(0), db_default=Decimal(0)
    )

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.title

    @cached_property
    def attention_pool_size(self) -> int:
        """Attention items of the study; counted once per loaded instance (per request)."""
        return self.items.filter(kind=StudyItem.Kind.ATTENTION).count()

    @property
    def allowed_values(self) -> set[int]:
        return {int(choice["value"]) for choice in self.label_choices}


class StudyItem(models.Model):
    class Kind(models.TextChoices):
        MAIN = "main"  # an example under study: exactly labels_per_item labels
        CONTROL = "control"  # a clean image: labelled like a main item
        ATTENTION = "attention"  # gold item with a known answer: every participant may get it
        PRACTICE = "practice"  # before the study, with feedback; never analysed

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="study_items")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MAIN)
    # Attention and practice items: the answer expected (the clean image's class).
    expected_label = models.SmallIntegerField(null=True, blank=True)
    # Balanced trial lists: items of one (attack setting, source class) share a stratum.
    stratum = models.PositiveIntegerField(default=0)
    # Seeded random order in which items are handed out among the least-labelled.
    shuffle_key = models.PositiveIntegerField()
    # Main and control items: active leases plus analysed labels (those of participants who
    # are not excluded), never above the study's labels_per_item but where a researcher
    # re-included someone (docs/studies.md, "Excluding by hand"); labelled_count: the
    # analysed labels. Attention and practice items hold no slot: every label counts.
    assigned_count = models.PositiveIntegerField(default=0)
    labelled_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["study_id", "shuffle_key"]
        constraints = [
            models.UniqueConstraint(fields=["study", "example"], name="unique_study_example"),
        ]
        indexes = [
            models.Index(fields=["study", "assigned_count", "shuffle_key"]),
            models.Index(fields=["study", "kind", "stratum", "assigned_count", "shuffle_key"]),
        ]

    def __str__(self) -> str:
        return f"item {self.pk} of study {self.study_id}"

    @property
    def is_control(self) -> bool:
        return self.kind == self.Kind.CONTROL

    @property
    def is_analysed(self) -> bool:
        return self.kind in ANALYSED_ITEM_KINDS


# The items whose labels the analysis counts; practice and attention checks are not.
ANALYSED_ITEM_KINDS = (StudyItem.Kind.MAIN, StudyItem.Kind.CONTROL)


class LabCode(models.Model):
    """A one-time code a lab hands a participant in person (recruitment "lab")."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="lab_codes")
    code = models.CharField(max_length=32)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "code"], name="unique_lab_code")]

    def __str__(self) -> str:
        return self.code


class StudyCollaborator(models.Model):
    """Another researcher the owner shares a study with: to read it, or to run it as well."""

    class Role(models.TextChoices):
        VIEW = "view", "View: the study, its progress, results and exports"
        EDIT = "edit", "Edit: as view, and change its design or status"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="collaborators")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_roles"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "user"], name="unique_study_collaborator"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} may {self.role} study {self.study_id}"


class PaymentFileDownload(models.Model):
    """Who downloaded which payment file of a study, and when: a file uploaded twice pays twice."""

    class File(models.TextChoices):
        PROLIFIC_BONUSES = "prolific-bonuses.csv", "Prolific: bulk bonus payments"
        PROLIFIC_APPROVALS = "prolific-approvals.txt", "Prolific: IDs to approve"
        MTURK_REVIEW = "mturk-review.csv", "MTurk: approve and reject"
        PAYMENTS = "payments.csv", "Every participant: outcome, bonus and reason"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="payment_downloads")
    downloaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    file = models.CharField(max_length=40, choices=File.choices)
    rows = models.PositiveIntegerField()
    downloaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.file} of study {self.study_id}"


class ExclusionDecision(models.Model):
    """A participant excluded or re-included: by the study's rules, or by a researcher's hand.

    Applied (``applied_at``) once the participant's main and control labels and leases
    have given their items' slots back (an exclusion) or taken them again (a
    re-inclusion): labeling.services.exclusion. A researcher's decision is applied at
    once; one by the rules inside an answer, at once unless another request holds one of
    its items, and then right after (its study's next lease sweep, failing that).
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="exclusion_decisions")
    # None: the participant's data was deleted on request; the decision stays as history.
    participant = models.ForeignKey(
        "labeling.Participant",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="exclusion_decisions",
    )
    excluded = models.BooleanField(help_text="True: excluded; False: re-included")
    reason = models.TextField()
    # None: the study's exclusion rules (attention checks, too-fast answers).
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField(default=timezone.now)
    # The exclusion ended the participant's session: their end gave the study's
    # excluded_outcome; one who had finished before got the completion code.
    ended_session = models.BooleanField(default=False)
    applied_at = models.DateTimeField(null=True, blank=True)
    slots_moved = models.PositiveIntegerField(default=0)  # main and control labels and leases
    # A re-inclusion: items that held more than k labels and leases once it was applied.
    items_over_k = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["study"],
                condition=models.Q(applied_at__isnull=True),
                name="exclusion_decision_unapplied",
            ),
        ]

    def __str__(self) -> str:
        verb = "excluded" if self.excluded else "re-included"
        return f"participant {self.participant_id} {verb}"


class AuditEvent(models.Model):
    """What was done to a study, by whom and when: its audit log (study.audit.record).

    Written where each action happens, never per label. ``detail`` holds what the action
    needs to be read later (a table and format, a participant, a status before and after).
    """

    class Action(models.TextChoices):
        EXPORT = "export", "Export downloaded"
        PAYMENT_FILE = "payment_file", "Payment file downloaded"
        EXCLUSION = "exclusion", "Participant excluded"
        REINCLUSION = "reinclusion", "Participant re-included"
        COLLABORATOR_ADDED = "collaborator_added", "Collaborator added"
        COLLABORATOR_REMOVED = "collaborator_removed", "Collaborator removed"
        STATUS_CHANGE = "status_change", "Status changed"
        DELETION = "deletion", "Participant's data deleted"
        WITHDRAWAL = "withdrawal", "Participant withdrew"

    # PROTECT: a study with a record of what was done to it is not deleted with its record.
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="audit_events")
    # None: the study's own rules (an exclusion for failed attention checks), or a
    # participant who withdrew.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    action = models.CharField(max_length=30, choices=Action.choices)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.action} of study {self.study_id}"
