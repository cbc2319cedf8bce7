"""SMS senders that send nothing: a recording fake (tests) and a console sender (development).

Both honour the contract of `SmsSender`: templates and numbers are validated, an idempotency key
is sent at most once, and scripted failures let tests exercise retries.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from datetime import UTC, datetime

from notifications.sms import SmsError, SmsMessage, SmsReceipt, mask_phone, render

log = logging.getLogger("notifications.sms")


class _RecordingSender:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._receipts: dict[str, SmsReceipt] = {}
        self._failures: deque[SmsError] = deque()
        self.sent: list[SmsMessage] = []
        self.calls = 0  # every call of send(), including duplicates and failures

    def fail_next(self, error: SmsError, times: int = 1) -> None:
        """The next `times` calls raise `error` (SmsUnavailable to test retries)."""
        with self._lock:
            self._failures.extend([error] * times)

    def send(self, message: SmsMessage) -> SmsReceipt:
        with self._lock:
            self.calls += 1
            if self._failures:
                raise self._failures.popleft()
            previous = self._receipts.get(message.idempotency_key)
            if previous is not None:
                return SmsReceipt(previous.message_id, previous.accepted_at, duplicate=True)
            receipt = SmsReceipt(uuid.uuid4().hex, datetime.now(UTC))
            self._receipts[message.idempotency_key] = receipt
            self.sent.append(message)
        self._deliver(message)
        return receipt

    def _deliver(self, message: SmsMessage) -> None:
        """What "sending" means for this sender."""


class FakeSmsSender(_RecordingSender):
    """Records messages in memory for tests: `sent`, `texts_to(phone)`, `last_to(phone)`."""

    def texts_to(self, phone: str) -> list[str]:
        return [render(m) for m in self.sent if m.phone == phone]

    def last_to(self, phone: str) -> SmsMessage | None:
        found = [m for m in self.sent if m.phone == phone]
        return found[-1] if found else None


class ConsoleSmsSender(_RecordingSender):
    """Development: writes each message to the log (number masked) instead of sending it."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__()
        self._log = logger or log

    def _deliver(self, message: SmsMessage) -> None:
        self._log.warning(
            "SMS not sent (console sender) to %s: %s", mask_phone(message.phone), render(message)
        )
