"""Structured JSON logs with the request id, and no personal data (DATA-03).

A filter scrubs anything shaped like a 身份证号, a mobile number or a session token from every
record (message, arguments, extra fields and the traceback) before the handler formats it.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from flask import g, has_app_context
from pythonjsonlogger.json import JsonFormatter

# Also the grouped forms people type ("110105 19491231 002X", "+86 139-1234-5678").
_ID_NUMBER = re.compile(r"(?<!\d)\d{6}[\s-]?(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}[\s-]?\d{3}[\dXx](?!\d)")
_PHONE = re.compile(r"(?<!\d)(?:(?:\+|00)?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?!\d)")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# The project's own session tokens (staff `st_`, resident `rt_`), wherever they appear.
_TOKEN = re.compile(r"(?<![A-Za-z0-9])(st|rt)_[A-Za-z0-9_-]{16,}")
_TRACEBACKS = logging.Formatter()

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)))


def scrub(text: str) -> str:
    text = _ID_NUMBER.sub("[身份证号]", text)
    text = _PHONE.sub("[手机号]", text)
    text = _BEARER.sub(r"\1[token]", text)
    return _TOKEN.sub(r"\1_[token]", text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(v) for v in value)
    return value


class ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        # A dict message is a structured log line (JsonFormatter); anything else prints as text.
        record.msg = _scrub_value(record.msg) if isinstance(record.msg, dict) else scrub(str(record.msg))
        # Tracebacks quote exception messages, which often carry the offending values: format the
        # traceback here, scrubbed, so that no formatter prints the raw one.
        if record.exc_info:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS:
                setattr(record, name, _scrub_value(value))
        return True


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = getattr(g, "request_id", None) if has_app_context() else None
        return True


def configure(level: str = "INFO", json_format: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                json_ensure_ascii=False,
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
        )
    handler.addFilter(RequestIdFilter())
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    for existing in [h for h in root.handlers if getattr(h, "_luohu", False)]:
        root.removeHandler(existing)
    handler._luohu = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
