"""Documenting the error statuses of a route (the one error shape, `DEFAULT_ERROR`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from app.core.api import Blueprint

F = TypeVar("F", bound=Callable[..., Any])

DESCRIPTIONS = {
    401: "未登录、登录已失效或微信登录凭证无效",
    403: "无权限或微信拒绝登录",
    404: "不存在或不属于当前用户",
    409: "与当前状态冲突（如已绑定）",
    422: "数据有误或不符合业务规则",
    429: "操作过于频繁（见 Retry-After）",
    503: "依赖的服务暂时不可用（见 Retry-After）",
}


def errors(blp: Blueprint, *statuses: int) -> Callable[[F], F]:
    def decorator(func: F) -> F:
        for status in statuses:
            func = blp.alt_response(status, response="DEFAULT_ERROR", description=DESCRIPTIONS[status])(func)
        return func

    return decorator
