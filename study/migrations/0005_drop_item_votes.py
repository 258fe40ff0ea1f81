"""The items' votes kept at every answer go: the exports count them from the labels."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("study", "0004_item_votes"),
        # That migration fills the votes of the labels stored before it: it runs first.
        ("labeling", "0004_participant_tallies"),
    ]

    operations = [
        migrations.RemoveField(model_name="studyitem", name="votes"),
    ]
