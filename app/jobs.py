"""Background work on rq: queues, enqueue helpers, the job runner and the embedded worker.

Every job runs through `run("module:function", *args)`, which gives the function an application
context (and so a database session) in any worker process. Jobs are idempotent and safe to run on
several machines at once; the periodic table is `app/cron.py` (`rq cron app/cron.py`).

With the embedded fakeredis (development, no REDIS_URL) there is no separate worker process:
`start_embedded_worker` runs the queues and the cron table in a daemon thread of the web process.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, has_app_context
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.timeouts import TimerDeathPenalty

from app.core.redis import get_redis

log = logging.getLogger(__name__)

QUEUES = ("default", "notifications", "payments")
_worker_app: Flask | None = None


def _target(func: Callable[..., Any] | str) -> str:
    if isinstance(func, str):
        return func
    return f"{func.__module__}:{func.__qualname__}"


def resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


def run(path: str, *args: Any, **kwargs: Any) -> Any:
    """The one rq entry point: call `path` in an application context of its own.

    Each job is its own unit of work, with its own session and `g`, also when it runs inside an
    existing context (the in-process burst worker, inline queues): a job must not inherit the
    caller's principal (and with it the centre scope), nor a session that an earlier job of the
    same burst left in a failed transaction.
    """
    if has_app_context():
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    else:
        global _worker_app
        if _worker_app is None:
            from app import create_app

            _worker_app = create_app()
        app = _worker_app
    with app.app_context():
        return resolve(path)(*args, **kwargs)


def queue(name: str = "default") -> Queue:
    return Queue(name, connection=get_redis(), is_async=bool(current_app.config["RQ_ASYNC"]))


def enqueue(
    func: Callable[..., Any] | str,
    *args: Any,
    queue_name: str = "default",
    job_id: str | None = None,
    **kwargs: Any,
) -> Job:
    # rq's explicit form: positional `*args` next to `kwargs=` is refused by rq (AssertionError).
    return queue(queue_name).enqueue(run, args=(_target(func), *args), kwargs=kwargs or None, job_id=job_id)


def enqueue_safely(func: Callable[..., Any] | str, *args: Any, queue_name: str = "default") -> None:
    """After-commit scheduling: if Redis is down, the periodic sweep delivers later."""
    try:
        enqueue(func, *args, queue_name=queue_name)
    except RedisError:
        log.warning("could not enqueue job; the periodic sweep will pick it up", extra={"job": _target(func)})


class InProcessWorker(SimpleWorker):
    """A SimpleWorker that also runs outside the main thread (signals belong to the main thread):
    job timeouts use a timer thread instead of SIGALRM."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()  # type: ignore[no-untyped-call]


def work_burst(app: Flask) -> int:
    """Run every queued job once, in this process (tests, embedded mode). Returns jobs run."""
    with app.app_context():
        connection = get_redis()
        queues = [Queue(name, connection=connection) for name in QUEUES]
        before = sum(q.count for q in queues)
        InProcessWorker(queues, connection=connection).work(burst=True, with_scheduler=True)
        return before


def start_embedded_worker(app: Flask, interval: float = 1.0) -> threading.Thread:
    """Development only: a daemon thread that runs the cron table and the queues."""
    from app.cron import due_cron_jobs

    def loop() -> None:
        last_run: dict[str, float] = {}
        while True:
            try:
                with app.app_context():
                    for name, path, every in due_cron_jobs():
                        if time.monotonic() - last_run.get(name, 0.0) >= every:
                            last_run[name] = time.monotonic()
                            enqueue(path)
                work_burst(app)
            except Exception:  # keep the development worker alive
                log.exception("embedded worker iteration failed")
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="embedded-rq-worker", daemon=True)
    thread.start()
    return thread
