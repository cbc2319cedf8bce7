"""Unified QR payment (统一扫码支付): bills, payment orders, callbacks, refunds, recovery, reconciliation."""
