"""The embedded development worker runs jobs in a thread of the web process (`make run`)."""

from __future__ import annotations

import threading

from flask import Flask
from rq import Queue

from app import jobs


def test_jobs_run_from_a_non_main_thread_without_signal_errors(app: Flask) -> None:
    jobs.enqueue("app.core.idempotency:purge_expired")
    outcome: dict[str, int] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("ran", jobs.work_burst(app)))
    worker.start()
    worker.join(timeout=60)
    assert outcome == {"ran": 1}
    queue = Queue("default", connection=app.extensions["redis"])
    assert queue.count == 0
    # Job timeouts and signal handlers need the main thread; a thread-safe worker must not fail the job.
    assert queue.failed_job_registry.count == 0
    assert queue.finished_job_registry.count == 1
