"""The audit log: exports, payment files, exclusions, sharing and status changes of a study."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('study', '0008_exclusion_decisions_and_excluded_outcome'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('action', models.CharField(choices=[('export', 'Export downloaded'), ('payment_file', 'Payment file downloaded'), ('exclusion', 'Participant excluded'), ('reinclusion', 'Participant re-included'), ('collaborator_added', 'Collaborator added'), ('collaborator_removed', 'Collaborator removed'), ('status_change', 'Status changed')], max_length=30)),
                ('detail', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('study', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='audit_events', to='study.study')),
            ],
            options={
                'ordering': ['-id'],
            },
        ),
    ]
