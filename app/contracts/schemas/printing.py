"""Printing, public verification and the scanned paper copy: requests and responses."""

from __future__ import annotations

from typing import Any

from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

ATTACHMENT_KIND_LABELS = {"photo": "签约现场照片", "scanned_copy": "签字纸质协议扫描件"}


def doc(text: str, **extra: Any) -> dict[str, Any]:
    return {"description": text, **extra}


class ContractVerifyQuerySchema(Schema):
    sha256 = fields.String(
        validate=validate.Regexp(r"^[0-9A-Fa-f][0-9A-Fa-f -]{14,94}[0-9A-Fa-f]$", error="须为十六进制校验码"),
        metadata=doc(
            "The agreement hash to check: the 16-character short form printed on the PDF (spaces "
            "allowed) or the full 64-character SHA-256"
        ),
    )


class ContractVerificationSchema(Schema):
    contract_no = fields.String(metadata=doc("签约协议编号"))
    status = fields.String(metadata=doc("Contract status code"))
    status_label = fields.String(metadata=doc("签约状态"))
    in_force = fields.Boolean(metadata=doc("Active and today within the period"))
    period_start = fields.Date()
    period_end = fields.Date()
    centre_name = fields.String(metadata=doc("签约社康中心"))
    team_name = fields.String(metadata=doc("家庭医生团队"))
    sha256_matches = fields.Boolean(
        allow_none=True, metadata=doc("Whether `sha256` matches the agreement; null when not asked")
    )
    checked_at = fields.DateTime()


class ContractScanUploadSchema(Schema):
    file = Upload(required=True, metadata=doc("The signed paper agreement: PDF, JPEG or PNG, at most 10 MB"))


class ContractAttachmentSchema(Schema):
    id = fields.UUID()
    contract_id = fields.UUID()
    kind = fields.String(metadata=doc("photo | scanned_copy"))
    kind_label = fields.Function(
        lambda a: ATTACHMENT_KIND_LABELS.get(a.kind, a.kind), metadata={"type": "string"}
    )
    content_type = fields.String()
    size = fields.Integer(metadata=doc("Bytes"))
    sha256 = fields.String()
    uploaded_by = fields.UUID(allow_none=True)
    uploaded_at = fields.DateTime()
