"""Cross-cutting HTTP behaviour: request ids, access log, security headers, CORS, health checks."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, jsonify, request
from flask_cors import CORS
from sqlalchemy import text

from app.core.api import public_route
from app.core.db import db
from app.core.redis import get_redis

log = logging.getLogger("luohu.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{8,64}")

_API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI (served from the local swagger-ui-bundle package) needs scripts, styles and images.
_DOCS_CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " \
            "img-src 'self' data:; frame-ancestors 'none'"


def init_app(app: Flask) -> None:
    origins = [o.strip() for o in app.config["CORS_ORIGINS"].split(",") if o.strip()]
    CORS(
        app,
        resources={r"/(api|mp|open)/.*": {"origins": origins}},
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
        max_age=600,
    )

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        docs = request.path.startswith(("/docs", "/swagger-ui"))
        response.headers.setdefault("Content-Security-Policy", _DOCS_CSP if docs else _API_CSP)
        if request.path.startswith(("/api/", "/mp/", "/open/")):
            response.headers.setdefault("Cache-Control", "no-store")
        if app.config["APP_ENV"] == "production":
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        principal = g.get("principal")
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,  # never the query string: it may carry personal data
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1),
                "actor": principal.actor_ref if principal else None,
            },
        )
        return response

    @app.get("/healthz")
    @public_route
    def healthz() -> Response:
        """Liveness: the process answers."""
        return jsonify(status="ok")

    @app.get("/readyz")
    @public_route
    def readyz() -> tuple[Response, int]:
        """Readiness: the database and Redis answer."""
        checks: dict[str, str] = {}
        try:
            db.session.execute(text("SELECT 1"))
            db.session.rollback()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            get_redis().ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
