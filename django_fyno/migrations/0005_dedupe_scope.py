"""Dedupe keys are unique per event (and per recipient of a fan-out), not globally.

``dedupe_key`` keeps the caller's key and is no longer unique by itself; the
new ``dedupe_hash`` (sha256 of the key's scope) is. Rows written before carry
their stored key as a one-recipient key of their event, so a retried
``notify()`` with that event and key still finds its row.
"""

import hashlib
import json
from typing import Any

from django.db import migrations, models

BATCH = 1000


def _dedupe_hash(event: str, dedupe_key: str) -> str:
    # FynoOutbox.dedupe_hash_for(event, dedupe_key) as of this migration.
    return hashlib.sha256(json.dumps([event, dedupe_key]).encode()).hexdigest()


def hash_existing_keys(apps: Any, schema_editor: Any) -> None:
    """Give every row with a dedupe key its hash; the keys were globally unique, so
    the hashes (which add the event) are too."""
    outbox = apps.get_model("django_fyno", "FynoOutbox")
    rows = outbox.objects.using(schema_editor.connection.alias)
    keyed = rows.filter(dedupe_key__isnull=False, dedupe_hash__isnull=True).order_by("pk")
    last = 0
    while True:
        batch = list(keyed.filter(pk__gt=last).only("pk", "event", "dedupe_key")[:BATCH])
        if not batch:
            return
        for row in batch:
            row.dedupe_hash = _dedupe_hash(row.event, row.dedupe_key)
        rows.bulk_update(batch, ["dedupe_hash"])
        last = batch[-1].pk


class Migration(migrations.Migration):
    dependencies = [
        ("django_fyno", "0004_workspaces"),
    ]

    operations = [
        migrations.AddField(
            model_name="fynooutbox",
            name="dedupe_hash",
            field=models.CharField(
                blank=True, editable=False, max_length=64, null=True, verbose_name="dedupe hash"
            ),
        ),
        migrations.RunPython(hash_existing_keys, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="fynooutbox",
            name="dedupe_hash",
            field=models.CharField(
                blank=True,
                editable=False,
                max_length=64,
                null=True,
                unique=True,
                verbose_name="dedupe hash",
            ),
        ),
        migrations.AlterField(
            model_name="fynooutbox",
            name="dedupe_key",
            field=models.CharField(
                blank=True, max_length=255, null=True, verbose_name="dedupe key"
            ),
        ),
    ]
