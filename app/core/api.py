"""flask-smorest `Api` and `Blueprint` of the house.

Every route declares who may call it with `@blp.auth(roles=...)` or `@blp.auth(public=True)`.
`check_route_auth(app)` runs at start-up and refuses to start when any route lacks a
declaration: default deny is enforced by construction, not by review (API-03).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

import flask_smorest
from flask import Flask, g, request
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from app.core.auth import authenticate
from app.core.errors import BusinessRuleViolation, PermissionDenied, http_error_response

F = TypeVar("F", bound=Callable[..., Any])

AUTH_ATTR = "_luohu_auth"
# Endpoints registered by flask-smorest itself (OpenAPI JSON, Swagger UI) and Flask's static files.
_FRAMEWORK_ENDPOINTS = ("static", "api-docs.")


class ErrorSchema(Schema):
    """The one error shape of the API."""

    code = fields.String(required=True, metadata={"description": "Stable machine-readable error code"})
    status = fields.Integer(required=True, metadata={"description": "HTTP status"})
    message = fields.String(required=True, metadata={"description": "Chinese message fit to show a user"})
    errors = fields.Dict(
        required=True,
        metadata={"description": "Field-level details: field name -> list of Chinese messages"},
    )


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def refuse_nul_characters() -> None:
    """NUL characters have no place in any field and PostgreSQL cannot store them: refuse early,
    naming the fields, before any handler runs."""
    errors: dict[str, list[str]] = {}
    for name, value in request.args.items(multi=True):
        if _has_nul(name) or _has_nul(value):
            errors[f"query.{name.replace(chr(0), '')}"] = ["不能包含空字符"]
    if request.mimetype == "application/json" and (request.content_length or 0) > 0:
        body = request.get_json(silent=True, cache=True)
        if isinstance(body, dict):
            for key, value in body.items():
                if _has_nul(key) or _has_nul(value):
                    errors[key.replace("\x00", "")] = ["不能包含空字符"]
        elif _has_nul(body):
            errors["_schema"] = ["不能包含空字符"]
    if errors:
        raise BusinessRuleViolation(
            "提交的内容含有不可见的空字符（NUL），请删除后重试：" + "、".join(errors),
            code="invalid_characters",
            errors=errors,
        )


class Api(flask_smorest.Api):  # type: ignore[misc]  # flask-smorest is untyped
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> ResponseReturnValue:
        body, status, headers = http_error_response(error)
        return body, status, headers


@dataclass(frozen=True)
class AuthSpec:
    roles: frozenset[str]
    public: bool = False
    # Routes reachable while a temporary password must still be changed.
    during_password_change: bool = False


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]  # flask-smorest is untyped
    def auth(
        self,
        roles: Iterable[str] | None = None,
        *,
        public: bool = False,
        during_password_change: bool = False,
    ) -> Callable[[F], F]:
        role_set = frozenset(str(r) for r in (roles or ()))
        if public == bool(role_set):
            raise ValueError("declare either roles=... or public=True")
        spec = AuthSpec(role_set, public, during_password_change)

        def decorator(func: F) -> F:
            @wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                g.auth_spec = spec
                if not spec.public:
                    principal = authenticate()
                    if principal.role not in spec.roles:
                        raise PermissionDenied()
                    if principal.extra.get("must_change_password") and not spec.during_password_change:
                        raise PermissionDenied(
                            "首次登录或密码已重置，请先修改密码", code="password_change_required"
                        )
                # After authentication (401/403 win), before any schema or handler sees the input.
                refuse_nul_characters()
                return func(*args, **kwargs)

            setattr(wrapper, AUTH_ATTR, spec)
            if spec.public:
                return cast(F, wrapper)
            documented = self.doc(security=[{"bearerAuth": []}])(wrapper)
            documented = self.alt_response(401, response="DEFAULT_ERROR", description="未登录或登录已失效")(
                documented
            )
            documented = self.alt_response(403, response="DEFAULT_ERROR", description="无权限")(documented)
            return cast(F, documented)

        return decorator

    def idempotent(self) -> Callable[[F], F]:
        """Require an `Idempotency-Key` header (money and other non-repeatable POSTs)."""
        from app.core import idempotency

        def decorator(func: F) -> F:
            wrapped = idempotency.idempotent(func)
            parameter = {
                "in": "header",
                "name": idempotency.HEADER,
                "required": True,
                "description": (
                    "Unique per operation (8-255 of A-Z a-z 0-9 _ . : -); reuse it to retry safely."
                ),
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{8,255}$"},
            }
            documented = self.doc(parameters=[parameter])(wrapped)
            return cast(
                F, self.alt_response(409, response="DEFAULT_ERROR", description="相同请求处理中")(documented)
            )

        return decorator


def public_route(func: F) -> F:
    """For plain Flask views outside flask-smorest (health checks)."""
    setattr(func, AUTH_ATTR, AuthSpec(frozenset(), public=True))
    return func


def route_auth_specs(app: Flask) -> dict[tuple[str, str], AuthSpec | None]:
    """(rule, method) -> declared AuthSpec (None when missing), for every non-framework route."""
    found: dict[tuple[str, str], AuthSpec | None] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(_FRAMEWORK_ENDPOINTS):
            continue
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            target = getattr(view_class, method.lower(), None) if view_class else view
            found[(rule.rule, method)] = getattr(target, AUTH_ATTR, None)
    return found


def check_route_auth(app: Flask) -> None:
    missing = [f"{method} {rule}" for (rule, method), spec in route_auth_specs(app).items() if spec is None]
    if missing:
        raise RuntimeError("routes without an @blp.auth declaration: " + ", ".join(sorted(missing)))
