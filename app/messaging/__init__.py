"""Messaging: SMS through the transactional outbox (more channels and features land here later).

`sms.send_sms(...)` is how application code sends an SMS: it checks the global daily budget and
writes an outbox row in the caller's transaction; the outbox job delivers it through the
framework-free adapter in `notifications/`.
"""
