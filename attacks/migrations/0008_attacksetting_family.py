"""Imported sets join a psychometric family only by a name their researcher gives them."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("attacks", "0007_remove_generationjob_image_pack"),
    ]

    operations = [
        migrations.AddField(
            model_name="attacksetting",
            name="family",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Imported sets only: sets the researcher marks as one psychometric family",
                max_length=60,
            ),
            preserve_default=False,
        ),
    ]
