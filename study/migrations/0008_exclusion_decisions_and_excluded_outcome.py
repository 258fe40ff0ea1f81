"""Exclusions by hand, and the end an excluded participant gets.

Every exclusion is now a recorded decision, and an excluded participant's main and
control labels give their items' slots back (docs/studies.md, "Excluding by hand").
Participants excluded before this have a decision made for them, already applied: their
labels' slots are given back here. Studies made before keep the end they promised their
participants: the completion code for everyone.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.db.models import F

COUNTED_KINDS = ("main", "control")


def _counted_items_of(apps, participant):
    Label = apps.get_model("labeling", "Label")
    return Label.objects.filter(participant=participant, item__kind__in=COUNTED_KINDS).values(
        "item_id"
    )


def give_back_slots_of_the_excluded(apps, schema_editor):
    Participant = apps.get_model("labeling", "Participant")
    StudyItem = apps.get_model("study", "StudyItem")
    ExclusionDecision = apps.get_model("study", "ExclusionDecision")
    now = django.utils.timezone.now()
    for participant in Participant.objects.filter(excluded=True).order_by("id").iterator():
        moved = StudyItem.objects.filter(pk__in=_counted_items_of(apps, participant)).update(
            assigned_count=F("assigned_count") - 1, labelled_count=F("labelled_count") - 1
        )
        ExclusionDecision.objects.create(
            study_id=participant.study_id,
            participant=participant,
            excluded=True,
            reason="; ".join(participant.exclusion_reasons) or "excluded",
            decided_at=participant.completed_at or now,
            ended_session=True,
            applied_at=now,
            slots_moved=moved,
        )


def take_back_slots_of_the_excluded(apps, schema_editor):
    Participant = apps.get_model("labeling", "Participant")
    StudyItem = apps.get_model("study", "StudyItem")
    for participant in Participant.objects.filter(excluded=True).order_by("id").iterator():
        StudyItem.objects.filter(pk__in=_counted_items_of(apps, participant)).update(
            assigned_count=F("assigned_count") + 1, labelled_count=F("labelled_count") + 1
        )


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0006_encrypted_recruiter_id_and_joined_at"),
        ("study", "0007_study_tells_of_known_answers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="excluded_outcome",
            field=models.CharField(
                choices=[
                    ("screen_out", "The screen-out code (Prolific: screened out)"),
                    ("completion", "The completion code, as everyone else"),
                    ("no_code", "No code: a thank-you page only"),
                ],
                default="completion",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="excluded_outcome",
            field=models.CharField(
                choices=[
                    ("screen_out", "The screen-out code (Prolific: screened out)"),
                    ("completion", "The completion code, as everyone else"),
                    ("no_code", "No code: a thank-you page only"),
                ],
                default="screen_out",
                max_length=20,
            ),
        ),
        migrations.CreateModel(
            name="ExclusionDecision",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "excluded",
                    models.BooleanField(help_text="True: excluded; False: re-included"),
                ),
                ("reason", models.TextField()),
                ("decided_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("ended_session", models.BooleanField(default=False)),
                ("applied_at", models.DateTimeField(blank=True, null=True)),
                ("slots_moved", models.PositiveIntegerField(default=0)),
                ("items_over_k", models.PositiveIntegerField(default=0)),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "participant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="exclusion_decisions",
                        to="labeling.participant",
                    ),
                ),
                (
                    "study",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="exclusion_decisions",
                        to="study.study",
                    ),
                ),
            ],
            options={
                "ordering": ["id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("applied_at__isnull", True)),
                        fields=["study"],
                        name="exclusion_decision_unapplied",
                    )
                ],
            },
        ),
        migrations.RunPython(give_back_slots_of_the_excluded, take_back_slots_of_the_excluded),
    ]
