"""The participants' figures kept at every answer go: the exports count them from the labels."""

from django.db import migrations

FIGURES = (
    "analysed_labels",
    "attention_answers",
    "first_label_at",
    "last_label_at",
    "median_client_response_ms",
    "median_server_response_ms",
)


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0004_participant_tallies"),
    ]

    operations = [migrations.RemoveField(model_name="participant", name=name) for name in FIGURES]
