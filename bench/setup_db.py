"""Prepare the benchmark's own database: migrate, seed the defaults, clear old runs, create a key.

Run by the harness in the platform's environment (``python -m bench.setup_db``); prints the raw key
alone on the last line of stdout. The key's limits are far above what the benchmark sends, so every
request still goes through the RPM/TPM checks without ever being refused.
"""

from __future__ import annotations

import os


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spignosapi.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import ApiKey
    from accounts.services import apikey_create

    call_command("migrate", "--noinput", verbosity=0)
    call_command("seed_defaults", verbosity=0)
    # Previous runs' rows would only slow the async-job polling and grow the database.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE routing_usagerecord, jobs_job CASCADE")
    ApiKey.objects.filter(name="bench").delete()
    _, raw = apikey_create(name="bench", rpm_limit=1_000_000_000, tpm_limit=2_000_000_000)
    print(raw)


if __name__ == "__main__":
    main()
