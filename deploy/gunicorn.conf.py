"""Production gunicorn settings:  gunicorn -c deploy/gunicorn.conf.py   (serves wsgi:app).

Environment:
  GUNICORN_BIND         address to listen on (default 127.0.0.1:8000, behind the reverse proxy)
  WEB_CONCURRENCY       worker processes (default 2 x CPU cores + 1)
  FORWARDED_ALLOW_IPS   proxies whose X-Forwarded-* headers are trusted (default 127.0.0.1,::1)

Database connections: every worker process has its own SQLAlchemy pool of up to
DB_POOL_SIZE + DB_MAX_OVERFLOW connections (5 + 5 by default), so one host can open
workers x 10 connections (50 on a 2-core machine), and every rq worker process adds its own.
Sum that over all hosts and workers and keep it below PostgreSQL's `max_connections`
(100 by default, a few of which are reserved for superusers), or put PgBouncer in between.
"""

from __future__ import annotations

import os
from pathlib import Path


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this container may actually use
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


wsgi_app = "wsgi:app"
chdir = str(Path(__file__).resolve().parent.parent)  # the repository root, where wsgi.py lives

bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * _cores() + 1)
worker_class = "sync"  # requests are short; slow work goes to rq workers
timeout = 30
graceful_timeout = 30
keepalive = 5

# Recycle workers now and then so a slow leak cannot grow forever; the jitter keeps them from
# all restarting at once.
max_requests = 1000
max_requests_jitter = 100

forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The application logs every request itself, as JSON with its request id: no access log here.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Each worker builds its own app (and so its own database pool and Redis connections) after the
# fork: connections must never be shared between processes.
preload_app = False

# gunicorn >= 25 opens a control socket at one fixed path per user ($HOME/.gunicorn/gunicorn.ctl),
# which several instances on one host would fight over; deployments restart through systemd instead.
control_socket_disable = True
