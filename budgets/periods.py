"""A budget's periods: UTC calendar days, weeks (from Monday), months, or one period for all time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .models import Budget

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime | None]:
    """(start, end) of the period of ``now`` (UTC): end is None for ``total``, which never resets."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Budget.Period.DAY:
        return day, day + timedelta(days=1)
    if period == Budget.Period.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == Budget.Period.MONTH:
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    if period == Budget.Period.TOTAL:
        return EPOCH, None
    raise ValueError(f"unknown budget period {period!r}")


def period_label(period: str, start: datetime) -> str:
    """The period's part of a counter's name: a new period is a new counter, so periods roll over by themselves."""
    if period == Budget.Period.TOTAL:
        return "total"
    return f"{period[0]}{start:%Y%m%d}"
