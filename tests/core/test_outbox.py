"""The transactional outbox and the rq job plumbing (app/core/outbox.py, app/jobs.py, app/cron.py; REL-06).

Jobs run in this process: `app.jobs.work_burst(app)` pushes an application context and runs an rq
`SimpleWorker` in burst mode; `app.jobs.run` sees that context and calls the job inside it (a
separate session on the test's connection, so the test's rollback still undoes everything).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask, g
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.cron import CronScheduler
from sqlalchemy import func, select, text

from app import jobs
from app.core import outbox
from app.core.auth import Role
from app.core.db import commit, db, rollback
from app.core.outbox import MAX_ATTEMPTS, OutboxMessage, OutboxStatus
from app.cron import CRON_TABLE
from tests.factories import as_principal, make_centre, make_staff

TOPIC = "test.core.outbox"
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


class WorkerKilled(BaseException):
    """Stands for SIGKILL: not an `Exception`, so nothing in the job catches it."""


@dataclass
class ProviderStub:
    """A provider that honours dedupe keys, like the SMS gateway emulator does."""

    calls: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    failures_left: int = 0
    kill_after_send: bool = False

    def __call__(self, payload: dict[str, Any], dedupe_key: str) -> None:
        self.calls.append((payload, dedupe_key))
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("provider down; callback to 13912345678 failed")
        if dedupe_key in self.delivered:
            self.suppressed.append(dedupe_key)
        else:
            self.delivered.append(dedupe_key)
        if self.kill_after_send:
            self.kill_after_send = False
            raise WorkerKilled()


_stub = ProviderStub()


@outbox.handler(TOPIC)
def _deliver(payload: dict[str, Any], dedupe_key: str) -> None:
    _stub(payload, dedupe_key)


@pytest.fixture
def provider() -> Iterator[ProviderStub]:
    global _stub
    _stub = ProviderStub()
    yield _stub


def _queued(app: Flask) -> int:
    connection = app.extensions["redis"]
    return sum(Queue(name, connection=connection).count for name in jobs.QUEUES)


def _row(message_id: uuid.UUID) -> OutboxMessage | None:
    return db.session.execute(
        select(OutboxMessage).where(OutboxMessage.id == message_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _count() -> int:
    return int(db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one())


def _key() -> str:
    return f"test:{uuid.uuid4()}"


# --- enqueue and deliver ------------------------------------------------------------------------


def test_delivered_once_after_commit_only(app: Flask, provider: ProviderStub) -> None:
    key = _key()
    message = outbox.enqueue(TOPIC, {"text": "您的签约已生效"}, dedupe_key=key)
    db.session.flush()
    assert provider.calls == []
    assert _queued(app) == 0  # nothing scheduled while the transaction is open
    assert jobs.work_burst(app) == 0
    assert provider.calls == []

    commit()
    assert provider.calls == []  # the commit schedules, a worker delivers
    assert _queued(app) == 1
    assert jobs.work_burst(app) == 1
    assert provider.calls == [({"text": "您的签约已生效"}, key)]
    row = _row(message.id)
    assert row is not None
    assert (row.status, row.attempts, row.locked_until, row.last_error) == (OutboxStatus.SENT, 1, None, None)
    assert row.sent_at is not None

    assert jobs.work_burst(app) == 0
    assert outbox.deliver_due() == 0
    assert len(provider.calls) == 1


def test_rollback_leaves_no_row_and_no_job(app: Flask, provider: ProviderStub) -> None:
    before = _count()
    outbox.enqueue(TOPIC, {"n": 1}, dedupe_key=_key())
    rollback()
    commit()
    assert _count() == before
    assert _queued(app) == 0
    assert jobs.work_burst(app) == 0
    assert outbox.deliver_due() == 0
    assert provider.calls == []


def test_same_dedupe_key_gives_one_row_and_one_delivery(app: Flask, provider: ProviderStub) -> None:
    key = _key()
    first = outbox.enqueue(TOPIC, {"n": 1}, dedupe_key=key)
    again = outbox.enqueue(TOPIC, {"n": 2}, dedupe_key=key)  # same transaction
    assert again is first
    commit()
    later = outbox.enqueue(TOPIC, {"n": 3}, dedupe_key=key)  # a later transaction
    commit()
    assert later.id == first.id
    assert (
        db.session.execute(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.dedupe_key == key)
        ).scalar_one()
        == 1
    )
    jobs.work_burst(app)
    outbox.deliver_due()
    assert provider.calls == [({"n": 1}, key)]


def test_deliver_of_a_sent_message_is_a_no_op(app: Flask, provider: ProviderStub) -> None:
    message = outbox.enqueue(TOPIC, {}, dedupe_key=_key())
    commit()
    assert outbox.deliver(str(message.id)) == "sent"
    assert outbox.deliver(str(message.id)) == "skipped"
    assert outbox.deliver(str(uuid.uuid4())) == "skipped"
    assert len(provider.calls) == 1
    row = _row(message.id)
    assert row is not None and row.attempts == 1


def test_unknown_topic_is_refused() -> None:
    with pytest.raises(KeyError):
        outbox.enqueue("no.such.topic", {}, dedupe_key=_key())


# --- failures, backoff, dead letters --------------------------------------------------------------


def test_failure_backs_off_then_retries_when_due(app: Flask, provider: ProviderStub) -> None:
    provider.failures_left = 2
    with time_machine.travel(START, tick=False) as traveller:
        message = outbox.enqueue(TOPIC, {"n": 1}, dedupe_key=_key())
        commit()
        jobs.work_burst(app)
        row = _row(message.id)
        assert row is not None
        assert (row.status, row.attempts, row.locked_until) == (OutboxStatus.PENDING, 1, None)
        assert row.next_attempt_at == START + outbox.backoff(1)
        assert row.last_error is not None and row.last_error.startswith("ConnectionError")
        assert "13912345678" not in row.last_error  # errors are scrubbed before they are stored

        assert outbox.deliver_due() == 0  # not due yet
        assert outbox.deliver(str(message.id)) == "skipped"  # a stray job does not jump the queue
        assert len(provider.calls) == 1

        traveller.shift(outbox.backoff(1))
        assert outbox.deliver_due() == 0  # due, tried, failed again
        row = _row(message.id)
        assert row is not None
        assert row.attempts == 2
        assert row.next_attempt_at == START + outbox.backoff(1) + outbox.backoff(2)
        assert outbox.backoff(2) > outbox.backoff(1)

        traveller.shift(outbox.backoff(2))
        assert outbox.deliver_due() == 1
        row = _row(message.id)
        assert row is not None
        assert (row.status, row.attempts) == (OutboxStatus.SENT, 3)
    assert len(provider.calls) == 3
    assert provider.delivered == [message.dedupe_key]


def test_backoff_grows_and_is_capped() -> None:
    delays = [outbox.backoff(n) for n in range(1, MAX_ATTEMPTS + 5)]
    assert delays == sorted(delays)
    assert delays[0] == timedelta(seconds=30)
    assert max(delays) == timedelta(hours=1)


def test_dead_after_max_attempts(app: Flask, provider: ProviderStub) -> None:
    provider.failures_left = 10_000
    with time_machine.travel(START, tick=False) as traveller:
        message = outbox.enqueue(TOPIC, {}, dedupe_key=_key())
        commit()
        jobs.work_burst(app)
        for attempt in range(2, MAX_ATTEMPTS + 1):
            row = _row(message.id)
            assert row is not None and row.status == OutboxStatus.PENDING and row.attempts == attempt - 1
            traveller.shift(outbox.backoff(attempt - 1))
            outbox.deliver_due()
        row = _row(message.id)
        assert row is not None
        assert (row.status, row.attempts) == (OutboxStatus.DEAD, MAX_ATTEMPTS)
        traveller.shift(timedelta(days=30))
        assert outbox.deliver_due() == 0
        assert outbox.deliver(str(message.id)) == "skipped"
    assert len(provider.calls) == MAX_ATTEMPTS


def test_worker_killed_after_the_provider_call_redelivers_with_the_same_key(
    app: Flask, provider: ProviderStub
) -> None:
    """REL-06: the worker dies after the provider accepted the message and before "sent" was
    written. The claim's lease expires, the sweep delivers again with the same dedupe key, and the
    provider suppresses the duplicate: one message reaches the resident."""
    provider.kill_after_send = True
    with time_machine.travel(START, tick=False) as traveller:
        message = outbox.enqueue(TOPIC, {"text": "提醒"}, dedupe_key=_key())
        commit()
        with pytest.raises(WorkerKilled):
            outbox.deliver(str(message.id))
        rollback()  # the dead worker's open transaction is gone
        row = _row(message.id)
        assert row is not None
        assert row.status == OutboxStatus.PENDING
        assert row.locked_until == START + outbox.LEASE

        assert outbox.deliver_due() == 0  # leased: nobody else takes it yet
        traveller.shift(outbox.LEASE - timedelta(seconds=1))
        assert outbox.deliver_due() == 0
        traveller.shift(timedelta(seconds=2))
        assert outbox.deliver_due() == 1
    row = _row(message.id)
    assert row is not None and row.status == OutboxStatus.SENT
    assert provider.delivered == [message.dedupe_key]
    assert provider.suppressed == [message.dedupe_key]
    assert [key for _, key in provider.calls] == [message.dedupe_key] * 2


def test_delayed_message_waits_for_the_sweep(app: Flask, provider: ProviderStub) -> None:
    with time_machine.travel(START, tick=False) as traveller:
        message = outbox.enqueue(TOPIC, {}, dedupe_key=_key(), delay=timedelta(minutes=10))
        commit()
        assert _queued(app) == 0
        assert outbox.deliver_due() == 0
        traveller.shift(timedelta(minutes=10))
        assert outbox.deliver_due() == 1
    row = _row(message.id)
    assert row is not None and row.status == OutboxStatus.SENT


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_redis_down_at_commit_loses_nothing(app: Flask, provider: ProviderStub) -> None:
    """REL-04: the commit succeeds without Redis; the periodic sweep delivers later."""
    working = app.extensions["redis"]
    app.extensions["redis"] = Redis(
        host="127.0.0.1", port=_closed_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        message = outbox.enqueue(TOPIC, {}, dedupe_key=_key())
        commit()
    finally:
        app.extensions["redis"] = working
    row = _row(message.id)
    assert row is not None and row.status == OutboxStatus.PENDING
    assert _queued(app) == 0
    assert provider.calls == []
    assert outbox.deliver_due() == 1
    assert len(provider.calls) == 1


# --- the job runner and the cron table -------------------------------------------------------------


def _job_sees() -> dict[str, Any]:
    """A job (importable by path) that reports the context it runs in."""
    return {"principal": g.get("principal"), "session": id(db.session())}


def _job_breaks_its_transaction() -> None:
    db.session.execute(text("SELECT * FROM no_such_table_anywhere"))


def test_run_uses_the_current_app_in_a_context_of_its_own(app: Flask, provider: ProviderStub) -> None:
    message = outbox.enqueue(TOPIC, {}, dedupe_key=_key())
    commit()
    assert jobs.run("app.core.outbox:deliver", str(message.id)) == "sent"
    assert jobs._worker_app is None  # no second application was built for it

    user = make_staff(Role.DOCTOR, make_centre())
    with as_principal(user):
        seen = jobs.run(f"{__name__}:_job_sees")
    assert seen["principal"] is None  # a job never runs as the caller (nor in the caller's centre)
    assert seen["session"] != id(db.session())


def test_a_failing_job_does_not_poison_the_next_one_in_a_burst(app: Flask, provider: ProviderStub) -> None:
    message = outbox.enqueue(TOPIC, {}, dedupe_key=_key(), delay=timedelta(0))
    commit()
    jobs.enqueue(f"{__name__}:_job_breaks_its_transaction")
    jobs.enqueue(outbox.deliver, str(message.id))
    assert jobs.work_burst(app) == 2
    row = _row(message.id)
    assert row is not None and row.status == OutboxStatus.SENT
    failed = Queue("default", connection=app.extensions["redis"]).failed_job_registry
    assert failed.count == 1


def test_enqueue_helper_with_positional_and_keyword_arguments(app: Flask, provider: ProviderStub) -> None:
    first = outbox.enqueue(TOPIC, {"n": 1}, dedupe_key=_key(), delay=timedelta(0))
    second = outbox.enqueue(TOPIC, {"n": 2}, dedupe_key=_key(), delay=timedelta(0))
    commit()
    jobs.enqueue(outbox.deliver, str(first.id))
    jobs.enqueue("app.core.outbox:deliver", message_id=str(second.id), queue_name="notifications")
    assert _queued(app) == 2
    assert jobs.work_burst(app) == 2
    assert sorted(payload["n"] for payload, _ in provider.calls) == [1, 2]


def test_inline_queue_runs_the_job_at_enqueue_time(
    app: Flask, provider: ProviderStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "RQ_ASYNC", False)
    message = outbox.enqueue(TOPIC, {}, dedupe_key=_key())
    commit()
    assert len(provider.calls) == 1
    row = _row(message.id)
    assert row is not None and row.status == OutboxStatus.SENT


def test_cron_table_loads_and_its_jobs_run(app: Flask, provider: ProviderStub) -> None:
    scheduler = CronScheduler(connection=app.extensions["redis"])
    scheduler.load_config_from_file("app.cron")
    registered = {job.name: job for job in scheduler.get_jobs()}
    assert set(registered) == {name for name, _path, _every in CRON_TABLE}
    assert {"outbox-sweep", "idempotency-purge"} <= set(registered)
    for job in registered.values():
        assert callable(jobs.resolve(job.args[0]))

    message = outbox.enqueue(TOPIC, {}, dedupe_key=_key(), delay=timedelta(0))  # left to the sweep
    commit()
    assert _queued(app) == 0
    assert {job.name for job in scheduler.enqueue_jobs()} == set(registered)
    assert _queued(app) == len(registered)
    assert jobs.work_burst(app) == len(registered)
    row = _row(message.id)
    assert row is not None and row.status == OutboxStatus.SENT
    assert len(provider.calls) == 1
