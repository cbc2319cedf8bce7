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
    """The one rq entry point: call `path` inside an application context."""
    if has_app_context():
        return resolve(path)(*args, **kwargs)
    global _worker_app
    if _worker_app is None:
        from app import create_app

        _worker_app = create_app()
    with _worker_app.app_context():
        return resolve(path)(*args, **kwargs)


def queue(name: str = "default") -> Queue:
    return Queue(name, connection=get_redis(), is_async=bool(current_app.config["RQ_ASYNC"]))


def enqueue(func: Callable[..., Any] | str, *args: Any, queue_name: str = "default",
            job_id: str | None = None, **kwargs: Any) -> Job:
    return queue(queue_name).enqueue(run, _target(func), *args, job_id=job_id, kwargs=kwargs or None)


def enqueue_safely(func: Callable[..., Any] | str, *args: Any, queue_name: str = "default") -> None:
    """After-commit scheduling: if Redis is down, the periodic sweep delivers later."""
    try:
        enqueue(func, *args, queue_name=queue_name)
    except RedisError:
        log.warning("could not enqueue job; the periodic sweep will pick it up", extra={"job": _target(func)})


def work_burst(app: Flask) -> int:
    """Run every queued job once, in this process (tests, embedded mode). Returns jobs run."""
    with app.app_context():
        connection = get_redis()
        queues = [Queue(name, connection=connection) for name in QUEUES]
        before = sum(q.count for q in queues)
        SimpleWorker(queues, connection=connection).work(burst=True, with_scheduler=True)
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
            except Exception:  # noqa: BLE001 - keep the development worker alive
                log.exception("embedded worker iteration failed")
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="embedded-rq-worker", daemon=True)
    thread.start()
    return thread
