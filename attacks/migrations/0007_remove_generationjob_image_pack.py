"""Image packs are gone: nothing reads a job's images from one file any more."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("attacks", "0006_attacksetting_budget"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="generationjob",
            name="image_pack",
        ),
    ]
