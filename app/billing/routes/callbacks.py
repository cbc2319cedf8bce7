"""Provider callbacks (异步通知): plain Flask views, kept out of OpenAPI, authenticated by the
provider's signature (checked in `services.callbacks`), answered in the provider's own format.

    POST /callbacks/wechat/pay      WeChat Pay v2 payment result (XML, MD5-signed)
    POST /callbacks/wechat/refund   WeChat Pay v2 refund result (XML, `req_info` AES-encrypted)
    POST /callbacks/alipay/pay      Alipay trade_status_sync (form, RSA2); refunds arrive here too

Each request: log the raw body (committed on its own), verify and apply (committed), then ack.
The ack leaves only after the commit succeeded; any failure answers the provider's failure ack so
that it notifies again, never a 500 page.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from app.billing import providers
from app.billing.services import callbacks
from app.core.api import public_route
from app.core.db import commit, rollback
from payments.base import Channel, PaymentProvider

log = logging.getLogger(__name__)

web = Blueprint("billing_callbacks", __name__, url_prefix="/callbacks")


def _ack(provider: PaymentProvider, ok: bool) -> Response:
    ack = provider.ack(ok)
    return Response(ack.body, status=ack.status, content_type=ack.content_type)


def _read_body() -> tuple[bytes, bool]:
    """At most MAX_BODY_BYTES of the body, and whether there was more."""
    limit = callbacks.MAX_BODY_BYTES
    declared = request.content_length
    if declared is not None and declared > limit:
        return request.stream.read(limit), True
    body = request.stream.read(limit + 1)
    return body[:limit], len(body) > limit


def _handle(channel: Channel) -> Response:
    body, too_large = _read_body()
    content_type = request.headers.get("Content-Type", "")
    note_id: int | None = None
    try:
        note = callbacks.receive(channel, body, content_type=content_type, remote_addr=request.remote_addr)
        commit()  # the raw log survives whatever happens next
        note_id = note.id
    except Exception:
        log.exception("could not log a payment notification", extra={"channel": str(channel)})
        rollback()
    try:
        provider = providers.get(channel)
    except Exception:  # misconfiguration: there is no ack format to answer in; the provider retries
        log.exception("payment provider unavailable for a notification", extra={"channel": str(channel)})
        _mark_error(note_id, "provider_unavailable")
        return Response("", status=503)
    if note_id is None:
        return _ack(provider, False)
    try:
        if too_large:
            handled = callbacks.reject(note, "body_too_large")
        else:
            handled = callbacks.process(note, provider, body, content_type)
        commit()
    except Exception as exc:
        log.exception(
            "payment notification failed; the provider will notify again",
            extra={"channel": str(channel), "notification_id": note_id},
        )
        rollback()
        _mark_error(note_id, type(exc).__name__)
        return _ack(provider, False)
    return _ack(provider, handled.ok)


def _mark_error(note_id: int | None, reason: str) -> None:
    if note_id is None:
        return
    try:
        callbacks.mark_error(note_id, reason)
        commit()
    except Exception:
        log.exception("could not mark a payment notification as failed", extra={"notification_id": note_id})
        rollback()


@web.post("/wechat/pay")
@public_route
def wechat_pay() -> Response:
    return _handle(Channel.WECHAT)


@web.post("/wechat/refund")
@public_route
def wechat_refund() -> Response:
    return _handle(Channel.WECHAT)


@web.post("/alipay/pay")
@public_route
def alipay_pay() -> Response:
    return _handle(Channel.ALIPAY)
