"""The hot tables keep only the indexes their queries use.

On PostgreSQL, ``db_index=True`` or ``unique=True`` on a CharField also creates a
``varchar_pattern_ops`` index (for ``LIKE 'prefix%'``), which django-fyno never
queries, and every write of a row updated it: the dirty mark of a save, an
outbox claim and its outcome. The same indexes and unique constraints are now
declared in ``Meta``, which creates only those. Same queries, same plans; the
four (outbox) and three (profiles) pattern indexes are gone.
"""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_fyno", "0006_staff"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="fynooutbox",
            name="dedupe_hash",
            field=models.CharField(
                blank=True, editable=False, max_length=64, null=True, verbose_name="dedupe hash"
            ),
        ),
        migrations.AlterField(
            model_name="fynooutbox",
            name="distinct_id",
            field=models.CharField(blank=True, max_length=255, verbose_name="distinct id"),
        ),
        migrations.AlterField(
            model_name="fynooutbox",
            name="request_id",
            field=models.CharField(blank=True, max_length=64, verbose_name="Fyno request id"),
        ),
        migrations.AlterField(
            model_name="fynooutbox",
            name="wsid",
            field=models.CharField(blank=True, max_length=64, verbose_name="workspace"),
        ),
        migrations.AlterField(
            model_name="fynoprofile",
            name="distinct_id",
            field=models.CharField(
                blank=True, max_length=255, null=True, verbose_name="distinct id"
            ),
        ),
        migrations.AlterField(
            model_name="fynoprofile",
            name="state",
            field=models.CharField(
                choices=[
                    ("pending", "pending"),
                    ("synced", "synced"),
                    ("failed", "failed"),
                    ("deleting", "deleting"),
                    ("deleted", "deleted"),
                    ("excluded", "excluded"),
                ],
                default="pending",
                max_length=16,
                verbose_name="state",
            ),
        ),
        migrations.AlterField(
            model_name="fynoprofile",
            name="wsid",
            field=models.CharField(blank=True, max_length=64, verbose_name="workspace"),
        ),
        migrations.AlterField(
            model_name="fynosuppression",
            name="wsid",
            field=models.CharField(blank=True, max_length=64, verbose_name="workspace"),
        ),
        migrations.AddIndex(
            model_name="fynooutbox",
            index=models.Index(fields=["distinct_id"], name="fyno_outbox_distinct_id"),
        ),
        migrations.AddIndex(
            model_name="fynooutbox",
            index=models.Index(fields=["request_id"], name="fyno_outbox_request_id"),
        ),
        migrations.AddIndex(
            model_name="fynooutbox",
            index=models.Index(fields=["wsid"], name="fyno_outbox_wsid"),
        ),
        migrations.AddIndex(
            model_name="fynoprofile",
            index=models.Index(fields=["state"], name="fyno_profile_state"),
        ),
        migrations.AddIndex(
            model_name="fynoprofile",
            index=models.Index(fields=["wsid"], name="fyno_profile_wsid"),
        ),
        migrations.AddIndex(
            model_name="fynosuppression",
            index=models.Index(fields=["wsid"], name="fyno_suppression_wsid"),
        ),
        migrations.AddConstraint(
            model_name="fynooutbox",
            constraint=models.UniqueConstraint(
                fields=("dedupe_hash",), name="fyno_outbox_dedupe_hash"
            ),
        ),
        migrations.AddConstraint(
            model_name="fynoprofile",
            constraint=models.UniqueConstraint(
                fields=("distinct_id",), name="fyno_profile_distinct_id"
            ),
        ),
    ]
