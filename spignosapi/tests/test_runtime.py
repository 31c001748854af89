"""Start-up tuning: the collector stops walking what start-up allocated."""

from __future__ import annotations

import gc
import sys

from spignosapi import runtime


def test_start_up_objects_are_frozen_and_young_ones_collected_less_often() -> None:
    threshold = gc.get_threshold()
    try:
        runtime.freeze_startup_objects()
        assert gc.get_freeze_count() > 50_000  # Django, the URL conf, every view
        assert gc.get_threshold() == (runtime.YOUNG_THRESHOLD, threshold[1], threshold[2])
        assert "jobs.api" in sys.modules and "rag.api" in sys.modules  # views imported before the freeze
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
