from typing import Any

from django.db import migrations, models


def demo_models_public(apps: Any, schema_editor: Any) -> None:
    """The demo models were on the dashboard already: put them on the public status page too."""
    LLMModel = apps.get_model("routing", "LLMModel")
    LLMModel.objects.filter(provider__is_demo=True, kind="chat").update(public=True)


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0011_model_supports"),
    ]

    operations = [
        migrations.AddField(
            model_name="llmmodel",
            name="public",
            field=models.BooleanField(
                default=False, help_text="Listed on the public status page (/status/); only monitored models are."
            ),
        ),
        migrations.RunPython(demo_models_public, migrations.RunPython.noop),
    ]
