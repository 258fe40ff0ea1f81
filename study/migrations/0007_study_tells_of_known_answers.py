"""A study may tell its participants that some images have known answers."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("study", "0006_payments_and_exclusions"),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="tells_of_known_answers",
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
