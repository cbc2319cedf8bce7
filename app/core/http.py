"""Cross-cutting HTTP behaviour: request ids, access log, security headers, CORS, health checks."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

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
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_READINESS = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "checks": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Per dependency (database, redis): `ok` or `error: <type>`",
        },
    },
}
# The health checks are plain Flask views (no auth, no schema machinery); they are documented in
# the OpenAPI document through the spec options, which apispec merges into the generated paths.
_HEALTH_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "tags": ["Health"],
            "summary": "Liveness: the process answers",
            "security": [],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["status"],
                        "properties": {"status": {"type": "string", "enum": ["ok"]}},
                    },
                    "Alive",
                )
            },
        }
    },
    "/readyz": {
        "get": {
            "tags": ["Health"],
            "summary": "Readiness: the database and Redis answer",
            "security": [],
            "responses": {"200": _json(_READINESS, "Ready"), "503": _json(_READINESS, "Not ready")},
        }
    },
}


def init_app(app: Flask) -> None:
    spec_options = app.config.setdefault("API_SPEC_OPTIONS", {})
    spec_options.setdefault("paths", {}).update(_HEALTH_PATHS)
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
        except Exception as exc:  # readiness reports any failure
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            get_redis().ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
