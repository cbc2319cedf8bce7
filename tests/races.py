"""Run requests at the same instant from several threads, each with its own test client and
application context (so each has its own database connection): races decided by the database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask


def race(app: Flask, calls: list[Callable[[Any], Any]]) -> list[Any]:
    """Start every `call(client)` behind one barrier; return the responses (in finishing order).
    Fails the test on an exception in a thread or on any 5xx."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(call: Callable[[Any], Any]) -> None:
        try:
            client = app.test_client()
            barrier.wait(timeout=30)
            with app.app_context():
                response = call(client)
            with lock:
                results.append(response)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(results) == len(calls)
    assert all(r.status_code < 500 for r in results), [r.get_data(as_text=True) for r in results]
    return results
