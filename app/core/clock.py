"""The one source of "now". Always timezone-aware UTC; tests move it with time-machine."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")


def now() -> datetime:
    return datetime.now(UTC)


def today_local() -> date:
    """Today's date in China Standard Time (business days, contract periods, reports)."""
    return now().astimezone(CHINA).date()


def local(value: datetime) -> datetime:
    return value.astimezone(CHINA)
