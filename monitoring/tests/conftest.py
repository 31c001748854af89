"""The monitor's defaults on top of the seeded routing defaults."""

from __future__ import annotations

import pytest

from monitoring.seed import seed_defaults
from tests.fixtures import Fake


@pytest.fixture
def monitored(seeded: Fake) -> Fake:
    """The seeded defaults plus the monitor's own (schedules, a statistics row per model)."""
    seed_defaults()
    return seeded


@pytest.fixture
def monitored_db(db: None) -> None:
    """``monitored`` inside a test's transaction, for tests that need no server, worker or commit: much
    cheaper than emptying every table after the test."""
    from routing.seed import seed_defaults as seed_routing

    seed_routing()
    seed_defaults()
