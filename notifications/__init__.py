"""Notification adapters: SMS (and, later, WeChat subscribe messages).

Framework-free: nothing here imports Flask, SQLAlchemy or `app`. Application code reaches these
adapters through `app/messaging/` (the outbox handler), never directly from a request.
"""

from notifications.sms import (
    TEMPLATES,
    SmsError,
    SmsMessage,
    SmsReceipt,
    SmsRejected,
    SmsSender,
    SmsTemplate,
    SmsUnavailable,
    mask_phone,
    render,
)

__all__ = [
    "TEMPLATES",
    "SmsError",
    "SmsMessage",
    "SmsReceipt",
    "SmsRejected",
    "SmsSender",
    "SmsTemplate",
    "SmsUnavailable",
    "mask_phone",
    "render",
]
