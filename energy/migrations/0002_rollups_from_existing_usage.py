"""Count the usage records written before the roll-ups existed into them (new records are counted as written)."""

from datetime import UTC

from django.db import migrations
from django.db.models import Count, IntegerField, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

MEASURES = (
    "prompt_tokens",
    "completion_tokens",
    "energy_wh",
    "energy_wh_low",
    "energy_wh_high",
    "co2e_g",
    "co2e_g_low",
    "co2e_g_high",
    "cost_usd",
)


def forwards(apps, schema_editor):
    UsageRecord = apps.get_model("routing", "UsageRecord")
    sums = {name: Sum(name) for name in MEASURES}
    sums["requests"] = Count("id")
    sums["estimated_requests"] = Count("id", filter=Q(energy_estimated=True))
    records = UsageRecord.objects.order_by().annotate(
        day=TruncDate("created_at", tzinfo=UTC), key=Coalesce("api_key_id", Value(0), output_field=IntegerField())
    )
    for name, columns in (("UsageDaily", ("model", "provider")), ("UsageDailyByUser", ("user_id",))):
        table = apps.get_model("energy", name)
        rows = []
        for row in records.values("day", "key", *columns).annotate(**sums).iterator(chunk_size=5000):
            row["api_key_id"] = row.pop("key")
            rows.append(table(**row))
        table.objects.bulk_create(rows, batch_size=5000)


def backwards(apps, schema_editor):
    apps.get_model("energy", "UsageDaily").objects.all().delete()
    apps.get_model("energy", "UsageDailyByUser").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("energy", "0001_initial"),
        ("routing", "0004_usagerecord_energy_detail"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
