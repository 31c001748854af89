# The usage records belong to the ledger app now (ledger 0001 takes the model over): only the routing app's
# migration state forgets it; the table, its rows and its indexes stay as they are.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0005_model_kind_local_provider"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="UsageRecord")],
            database_operations=[],
        ),
    ]
