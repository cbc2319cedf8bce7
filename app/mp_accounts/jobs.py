"""Periodic jobs of mini-program accounts (entry points: they commit).

Scheduled in `app/cron.py`:
    ("mp-sessions-purge", "app.mp_accounts.jobs:purge_sessions", 3600),
"""

from __future__ import annotations

from app.core.db import transaction
from app.mp_accounts.services import sessions


def purge_sessions() -> int:
    """Delete resident sessions that ended more than 7 days ago. Idempotent."""
    with transaction():
        return sessions.purge_sessions()
