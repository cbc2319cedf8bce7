"""Shapes of the reconciliation (对账) runs, their discrepancy items and the manual (re-)run."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.billing.models import (
    DISCREPANCY_LABELS,
    ITEM_STATUS_LABELS,
    RUN_STATUS_LABELS,
    SUBJECT_LABELS,
    DiscrepancyKind,
    ReconRunStatus,
)
from app.billing.schemas.orders import _DATE_RANGE
from app.billing.services.reports import CHANNEL_LABELS, label, yuan
from app.core.pagination import PageArgsSchema
from payments.base import Channel

_CHANNELS = [c.value for c in Channel]


class ReconciliationRunQuerySchema(PageArgsSchema):
    channel = fields.String(validate=validate.OneOf(_CHANNELS))
    status = fields.String(validate=validate.OneOf([s.value for s in ReconRunStatus]))
    date_from = fields.Date(validate=_DATE_RANGE, metadata={"description": "Bill date, inclusive"})
    date_to = fields.Date(validate=_DATE_RANGE, metadata={"description": "Bill date, inclusive"})

    @validates_schema
    def _range(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ValidationError("结束日期不能早于开始日期", field_name="date_to")


class ReconciliationRunCreateSchema(Schema):
    channel = fields.String(required=True, validate=validate.OneOf(_CHANNELS))
    bill_date = fields.Date(
        required=True,
        validate=_DATE_RANGE,
        metadata={
            "description": "China-time date of the bill; before today (bills are ready after 10:00 next day)"
        },
    )


class ReconciliationItemQuerySchema(Schema):
    kind = fields.String(
        validate=validate.OneOf([k.value for k in DiscrepancyKind]),
        metadata={"description": "; ".join(f"{k}={v}" for k, v in DISCREPANCY_LABELS.items())},
    )


def _amount(value: int | None) -> str | None:
    return None if value is None else yuan(value)


class ReconciliationItemSchema(Schema):
    id = fields.UUID(required=True)
    kind = fields.String(required=True)
    kind_label = fields.Function(lambda i: label(DISCREPANCY_LABELS, i.kind), required=True)
    subject = fields.String(required=True, metadata={"description": "payment | refund"})
    subject_label = fields.Function(lambda i: label(SUBJECT_LABELS, i.subject), required=True)
    status = fields.String(
        required=True, metadata={"description": "open | fixed (settled by the run by query)"}
    )
    status_label = fields.Function(lambda i: label(ITEM_STATUS_LABELS, i.status), required=True)
    institution_id = fields.UUID(allow_none=True)
    out_trade_no = fields.String(required=True)
    out_refund_no = fields.String(allow_none=True)
    provider_trade_no = fields.String(allow_none=True)
    order_id = fields.UUID(allow_none=True)
    refund_id = fields.UUID(allow_none=True)
    local_amount_fen = fields.Integer(allow_none=True)
    local_amount_yuan = fields.Function(lambda i: _amount(i.local_amount_fen), allow_none=True)
    provider_amount_fen = fields.Integer(allow_none=True)
    provider_amount_yuan = fields.Function(lambda i: _amount(i.provider_amount_fen), allow_none=True)
    local_state = fields.String(allow_none=True)
    provider_state = fields.String(allow_none=True)
    occurred_at = fields.DateTime(allow_none=True)
    note = fields.String(required=True)
    anomaly_id = fields.UUID(allow_none=True)


class ReconciliationRunSchema(Schema):
    id = fields.UUID(required=True)
    channel = fields.String(required=True)
    channel_label = fields.Function(lambda r: label(CHANNEL_LABELS, r.channel), required=True)
    bill_date = fields.Date(required=True)
    status = fields.String(required=True)
    status_label = fields.Function(lambda r: label(RUN_STATUS_LABELS, r.status), required=True)
    attempts = fields.Integer(required=True)
    started_at = fields.DateTime(required=True)
    finished_at = fields.DateTime(allow_none=True)
    triggered_by_kind = fields.String(required=True)
    error_code = fields.String(
        allow_none=True, metadata={"description": "not_ready | corrupt | download_failed"}
    )
    error_message = fields.String(allow_none=True)
    statement_sha1 = fields.String(allow_none=True)
    payment_lines = fields.Integer(required=True)
    refund_lines = fields.Integer(required=True)
    payment_total_fen = fields.Integer(required=True)
    payment_total_yuan = fields.Function(lambda r: yuan(r.payment_total_fen), required=True)
    refund_total_fen = fields.Integer(required=True)
    refund_total_yuan = fields.Function(lambda r: yuan(r.refund_total_fen), required=True)
    matched_count = fields.Integer(required=True)
    provider_only_count = fields.Integer(required=True)
    local_only_count = fields.Integer(required=True)
    amount_mismatch_count = fields.Integer(required=True)
    status_mismatch_count = fields.Integer(required=True)
    fixed_count = fields.Integer(required=True)
    parked_count = fields.Integer(
        required=True, metadata={"description": "暂存池: re-checked against the next day"}
    )
    discrepancy_count = fields.Integer(required=True)


class ReconciliationRunDetailSchema(ReconciliationRunSchema):
    items = fields.List(
        fields.Nested(ReconciliationItemSchema),
        required=True,
        metadata={"description": "The discrepancies (a centre-level auditor sees its own centre's only)"},
    )
