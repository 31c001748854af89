"""What the broker says about the job queues: messages waiting per queue, for ``/api/v1/stats`` and as the
``spignos_queue_depth`` gauge that ``/metrics`` computes at scrape time (``spignosapi/metrics.py``)."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


def queue_depths() -> dict[str, int | None]:
    """Messages waiting per queue; None when the broker could not say.

    A queue that does not exist holds nothing: the Redis transport has no key for an empty queue, so a
    passive declare of one fails as if it were missing. Each queue gets its own channel, because on
    RabbitMQ that failure closes the channel it happened on.
    """
    from celery import current_app as app  # the project's app, not imported: it sits above the apps
    from kombu.exceptions import ChannelError

    depths: dict[str, int | None] = {}
    with app.connection_for_write() as conn:
        for name in ("high", "default", "low"):
            try:
                channel = conn.channel()
            except Exception:
                depths[name] = None
                continue
            try:
                depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except ChannelError:
                depths[name] = 0
            except Exception:
                depths[name] = None
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
    return depths


class QueueCollector(Collector):
    """Messages waiting in each Celery queue at scrape time, as the broker counts them."""

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("spignos_queue_depth", "Messages waiting per Celery queue", labels=["queue"])

    def describe(self) -> Any:
        # Without it, registering would collect (ask the broker) at import time to learn the name.
        yield self._family()

    def collect(self) -> Any:
        gauge = self._family()
        try:
            depths = queue_depths()
        except Exception:  # the broker is down: no sample rather than a failed scrape
            depths = {}
        for name, depth in depths.items():
            if depth is not None:
                gauge.add_metric([name], depth)
        yield gauge
