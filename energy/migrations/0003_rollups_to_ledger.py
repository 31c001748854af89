# The daily roll-ups belong to the ledger app now, beside the records they count (ledger 0001 takes the models
# over): only the energy app's migration state forgets them; the tables and their rows stay as they are.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("energy", "0002_rollups_from_existing_usage"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="UsageDaily"),
                migrations.DeleteModel(name="UsageDailyByUser"),
            ],
            database_operations=[],
        ),
    ]
