"""The 医保医师库 import: upload, summary and report items."""

from __future__ import annotations

from typing import Any

from flask_smorest.fields import Upload
from marshmallow import (
    Schema,
    fields,
    validate,
)

from app.core.pagination import PageArgsSchema
from app.doctors.models import (
    MI_CATEGORY_LABELS,
)
from app.doctors.schemas.common import (
    MI_CATEGORIES,
    TextInputSchema,
    doc,
)

# --- 医保医师库 ----------------------------------------------------------------------------------


class DoctorMiUploadSchema(Schema):
    file = Upload(required=True, metadata=doc("CSV or XLSX, at most 10 MB; columns: see the endpoint"))


class DoctorMiCategoryCountSchema(Schema):
    category = fields.String(dump_only=True)
    label = fields.String(dump_only=True)
    count = fields.Integer(dump_only=True)


class DoctorMiImportSchema(Schema):
    id = fields.UUID(dump_only=True)
    filename = fields.String(dump_only=True)
    file_format = fields.String(dump_only=True)
    file_sha256 = fields.String(dump_only=True)
    uploaded_by = fields.UUID(dump_only=True, allow_none=True)
    uploaded_at = fields.DateTime(dump_only=True)
    row_count = fields.Integer(dump_only=True)
    matched_count = fields.Integer(dump_only=True)
    categories = fields.Method("_categories", dump_only=True)
    applied_at = fields.DateTime(dump_only=True, allow_none=True)
    applied_count = fields.Integer(dump_only=True)

    def _categories(self, batch: Any) -> list[dict[str, Any]]:
        from app.doctors.services.mi_library import category_counts

        return category_counts(batch)


class DoctorMiReportQuerySchema(TextInputSchema, PageArgsSchema):
    category = fields.String(validate=validate.OneOf(MI_CATEGORIES))


class DoctorMiDoctorRefSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = fields.String(dump_only=True)


class DoctorMiItemSchema(Schema):
    id = fields.UUID(dump_only=True)
    seq = fields.Integer(dump_only=True)
    category = fields.String(dump_only=True, metadata={"enum": MI_CATEGORIES})
    category_label = fields.Function(lambda i: MI_CATEGORY_LABELS[i.category], dump_only=True)
    line_no = fields.Function(
        lambda i: i.row.line_no if i.row is not None else None, dump_only=True, allow_none=True
    )
    doctor = fields.Nested(DoctorMiDoctorRefSchema, dump_only=True, allow_none=True)
    institution_id = fields.UUID(dump_only=True, allow_none=True)
    mi_code = fields.String(dump_only=True, allow_none=True)
    message = fields.String(dump_only=True)
    ours = fields.String(dump_only=True, allow_none=True, metadata=doc("Our value (ID numbers masked)"))
    theirs = fields.String(
        dump_only=True, allow_none=True, metadata=doc("The list's value (ID numbers masked)")
    )
    applied_at = fields.DateTime(dump_only=True, allow_none=True)
