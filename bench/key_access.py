"""``python -m bench.key_access``: the CPU the key checks of issue 16 add to each request, in microseconds.

Pure and in memory, so measured in one process without servers or databases: the 401 checks on a key
(``key_refusal``: disabled, expired, a rotated secret past its grace), then the allow-list on a routed
request's chain (``allowed_route``: two models, a key and a team list with an id, a glob and a category),
against a key without any list (the fast exit), and the extra admission arguments (a team's counters and a
parallel-request slot). Budget: well under 50 µs per request in all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spignosapi.settings")


def _per_call_us(run: Callable[[], object], calls: int = 200_000, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main() -> None:
    django.setup()
    from accounts.selectors import KeyInfo, key_refusal
    from routing.access import allowed_route
    from routing.router import Route
    from routing.selectors import CategoryInfo, RoutingConfig

    categories = {
        "code": CategoryInfo("code", "", (), ("demo/demo-smart", "demo/demo-fast"), True, ()),
        "conversation": CategoryInfo("conversation", "", (), ("demo/demo-fast", "demo/demo-smart"), True, ()),
    }
    config = RoutingConfig(providers={}, models={}, categories=categories, demo_only=True)
    route = Route("conversation", ("demo/demo-fast", "demo/demo-smart"), "keywords")
    base = KeyInfo(1, "k", False, None, None, None, None, None, "h", expires_at=time.time() + 3600)
    listed = KeyInfo(
        1, "k", False, None, None, None, None, None, "h", team_id=1, expires_at=time.time() + 3600,
        allowed_models=("openai/gpt-4o", "demo/*-smart", "code"), team_allowed_models=("demo/*",),
        team_rpm_limit=100, team_tpm_limit=10_000, max_parallel_requests=4,
    )  # fmt: skip

    refusal = _per_call_us(lambda: key_refusal(base))
    no_list = _per_call_us(lambda: allowed_route(base, route, config))
    with_lists = _per_call_us(lambda: allowed_route(listed, route, config))
    print(f"key_refusal (disabled/expired/grace):          {refusal:6.2f} µs")
    print(f"allowed_route, a key without lists:            {no_list:6.2f} µs")
    print(f"allowed_route, key and team lists (2 models):  {with_lists:6.2f} µs")
    print(f"added per request, worst case:                 {refusal + with_lists:6.2f} µs")


if __name__ == "__main__":
    main()
