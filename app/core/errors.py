"""One error shape for the whole API: `{code, status, message, errors}`.

`code` is stable and machine-readable (clients branch on it); `message` is Chinese and fit to
show a resident or a nurse; `errors` carries field-level details (field -> list of messages).
Services raise `DomainError` subclasses; nothing below the route layer builds HTTP responses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

ErrorDetails = Mapping[str, Any]


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"
    message: str = "请求有误"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        errors: ErrorDetails | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.code = code or type(self).code
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "status": self.status, "message": self.message, "errors": self.errors}


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    message = "请先登录"


class PermissionDenied(DomainError):
    status = 403
    code = "permission_denied"
    message = "您没有权限进行此操作"


class NotFound(DomainError):
    status = 404
    code = "not_found"
    message = "未找到该记录"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    message = "操作与当前数据状态冲突，请刷新后重试"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    message = "当前状态不允许此操作"


class BusinessRuleViolation(DomainError):
    status = 422
    code = "business_rule_violation"
    message = "不符合业务规则"


class Locked(DomainError):
    status = 423
    code = "locked"
    message = "已锁定"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"
    message = "操作过于频繁，请稍后再试"


class ProviderUnavailable(DomainError):
    status = 503
    code = "service_unavailable"
    message = "外部服务暂时不可用，请稍后再试"


# Generic HTTP errors raised by Flask/werkzeug/webargs, in the same shape.
_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "请求格式有误"),
    401: ("unauthorized", "请先登录"),
    403: ("permission_denied", "您没有权限进行此操作"),
    404: ("not_found", "请求的地址不存在"),
    405: ("method_not_allowed", "不支持该请求方法"),
    406: ("not_acceptable", "不支持请求的返回格式"),
    409: ("conflict", "操作与当前数据状态冲突，请刷新后重试"),
    413: ("payload_too_large", "提交的内容过大"),
    415: ("unsupported_media_type", "请以 JSON 格式提交"),
    422: ("validation_error", "提交的数据有误，请按提示修改"),
    428: ("precondition_required", "缺少必需的请求头"),
    429: ("rate_limited", "操作过于频繁，请稍后再试"),
    500: ("internal_error", "系统繁忙，请稍后再试"),
    503: ("service_unavailable", "服务暂时不可用，请稍后再试"),
}


def error_body(
    status: int, *, code: str | None = None, message: str | None = None, errors: ErrorDetails | None = None
) -> dict[str, Any]:
    default_code, default_message = _HTTP_CODES.get(status, ("error", "请求失败"))
    return {
        "code": code or default_code,
        "status": status,
        "message": message or default_message,
        "errors": dict(errors or {}),
    }


# The few messages webargs writes itself (marshmallow's are translated by app.core.i18n).
_WEBARGS_MESSAGES = {"Invalid JSON body.": "请求体不是有效的 JSON"}


def _translated(value: Any) -> Any:
    if isinstance(value, str):
        return _WEBARGS_MESSAGES.get(value, value)
    if isinstance(value, list):
        return [_translated(item) for item in value]
    return value


def _flatten_webargs(messages: Mapping[str, Any]) -> dict[str, Any]:
    """webargs nests errors by location ({"json": {...}, "query": {...}}); clients want fields."""
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, Mapping):
            for name, value in fields.items():
                flat[name if location in ("json", "form", "files") else f"{location}.{name}"] = value
        else:
            flat[location] = _translated(fields)
    return flat


def _first_message(errors: Mapping[str, Any]) -> str | None:
    for name, value in errors.items():
        while isinstance(value, Mapping) and value:
            name, value = next(iter(value.items()))
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str):
            return f"{name}：{value}" if name != "_schema" else value
    return None


def http_error_response(exc: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors: dict[str, Any] = {}
    message: str | None = None
    if "messages" in data:
        errors = _flatten_webargs(data["messages"])
        first = _first_message(errors)
        if first:
            message = f"提交的数据有误：{first}"
    headers: dict[str, str] = {}
    valid_methods = getattr(exc, "valid_methods", None)
    if status == 405 and valid_methods:
        headers["Allow"] = ", ".join(sorted(valid_methods))
    return error_body(status, message=message, errors=errors), status, headers


def register_error_handlers(app: Flask) -> None:
    from app.core import audit
    from app.core.db import commit, rollback

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError) -> ResponseReturnValue:
        rollback()
        # Denials are audited even though the business transaction is rolled back.
        if audit.write_durable_events():
            commit()
        response = jsonify(exc.body())
        response.status_code = exc.status
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        if isinstance(exc, HTTPException):
            body, status, headers = http_error_response(exc)
            response = jsonify(body)
            response.status_code = status
            response.headers.update(headers)
            return response
        rollback()
        request_id = getattr(g, "request_id", "")
        log.exception("unhandled error", extra={"error_type": type(exc).__name__})
        body = error_body(500, message=f"系统繁忙，请稍后再试（请求编号 {request_id}）")
        return jsonify(body), 500
