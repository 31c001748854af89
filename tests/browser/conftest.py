"""The browser tests' fixtures."""

from __future__ import annotations

import pytest

from routing.models import LLMModel
from routing.services import routing_changed
from tests.fixtures import Fake


@pytest.fixture
def plain_probes_only(seeded: Fake) -> None:
    """The demo models are probed for a streamed answer only (no tool-call or structured-output probe):
    the dashboard's pages are about that probe's rows."""
    LLMModel.objects.update(supports_tools=False, supports_structured_output=False)
    routing_changed()
