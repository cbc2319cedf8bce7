"""A centre's aggregate QR codes (聚合收款码): one printed code for WeChat and Alipay that opens the
H5 cashier (`/pay/c/<token>`). Centre admins create and revoke them; cashiers list and print.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response

from app.billing.models import AggregateQr
from app.billing.qr import PNG_MIMETYPE, SVG_MIMETYPE
from app.billing.schemas.cashier import (
    AggregateQrCreateSchema,
    AggregateQrListArgsSchema,
    AggregateQrSchema,
    PosterArgsSchema,
)
from app.billing.services import cashier
from app.billing.services.orders import actor_from_principal
from app.core.api import Blueprint
from app.core.auth import Role, require_principal
from app.core.db import commit
from app.core.errors import BusinessRuleViolation, PermissionDenied
from app.core.scope import get_or_404

MANAGERS = [Role.DISTRICT_ADMIN, Role.CENTRE_ADMIN]
READERS = [Role.DISTRICT_ADMIN, Role.CENTRE_ADMIN, Role.CASHIER]

blp = Blueprint(
    "billing_aggregate",
    __name__,
    url_prefix="/api/v1/billing",
    description="统一支付: a centre's aggregate QR codes (one code for both wallets, opening the H5 cashier)",
)

_IMAGE = {"content": {PNG_MIMETYPE: {"schema": {"type": "string", "format": "binary"}}}}
_SVG = {"content": {SVG_MIMETYPE: {"schema": {"type": "string"}}}}


def _view(code: AggregateQr) -> dict[str, Any]:
    return {
        "id": code.id,
        "institution_id": code.institution_id,
        "label": code.label,
        "active": code.active,
        "url": cashier.aggregate_url(code),
        "created_at": code.created_at,
        "revoked_at": code.revoked_at,
    }


def _centre(requested: uuid.UUID | None) -> uuid.UUID:
    principal = require_principal()
    if principal.is_district:
        if requested is None:
            raise BusinessRuleViolation(
                "请选择收款码所属的社康中心",
                code="centre_required",
                errors={"institution_id": ["请选择社康中心"]},
            )
        return requested
    assert principal.institution_id is not None
    if requested is not None and requested != principal.institution_id:
        raise PermissionDenied("只能管理本中心的收款码", code="outside_scope")
    return principal.institution_id


def _image(body: bytes, mimetype: str, filename: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.route("/aggregate-qr", methods=["POST"])
@blp.auth(roles=MANAGERS)
@blp.arguments(AggregateQrCreateSchema)
@blp.response(201, AggregateQrSchema)
@blp.alt_response(422, response="DEFAULT_ERROR", description="社康中心未选择或不存在")
def create_code(args: dict[str, Any]) -> Any:
    """Create an aggregate QR code for the caller's centre (district admins name the centre)."""
    code = cashier.create_aggregate_qr(
        institution_id=_centre(args.get("institution_id")), label=args["label"], actor=actor_from_principal()
    )
    commit()
    return _view(code)


@blp.route("/aggregate-qr", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(AggregateQrListArgsSchema, location="query")
@blp.response(200, AggregateQrSchema(many=True))
def list_codes(args: dict[str, Any]) -> Any:
    """The codes of the caller's centre (district staff: every centre), newest first."""
    return [_view(c) for c in cashier.list_aggregate_qrs(include_revoked=args["include_revoked"])]


@blp.route("/aggregate-qr/<uuid:code_id>", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, AggregateQrSchema)
@blp.alt_response(404, response="DEFAULT_ERROR", description="不存在或不属于本中心")
def get_code(code_id: uuid.UUID) -> Any:
    """One code."""
    return _view(get_or_404(AggregateQr, code_id, object_type="aggregate_qr"))


@blp.route("/aggregate-qr/<uuid:code_id>/revoke", methods=["POST"])
@blp.auth(roles=MANAGERS)
@blp.response(200, AggregateQrSchema)
@blp.alt_response(404, response="DEFAULT_ERROR", description="不存在或不属于本中心")
@blp.alt_response(409, response="DEFAULT_ERROR", description="已停用")
def revoke_code(code_id: uuid.UUID) -> Any:
    """Stop a code: scanning it shows "该收款码无效或已停用" from now on (reprint a new one)."""
    code = get_or_404(AggregateQr, code_id, object_type="aggregate_qr", action="update")
    cashier.revoke_aggregate_qr(code, actor=actor_from_principal())
    commit()
    return _view(code)


@blp.route("/aggregate-qr/<uuid:code_id>/qr.png", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, description="The QR code as PNG", content_type=PNG_MIMETYPE)
@blp.alt_response(404, response="DEFAULT_ERROR", description="不存在或不属于本中心")
def code_png(code_id: uuid.UUID) -> Any:
    """The bare QR code (PNG) of an active code."""
    code = get_or_404(AggregateQr, code_id, object_type="aggregate_qr")
    return _image(cashier.qr_png(_active(code)), PNG_MIMETYPE, f"aggregate-qr-{code.id}.png")


@blp.route("/aggregate-qr/<uuid:code_id>/qr.svg", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, description="The QR code as SVG", content_type=SVG_MIMETYPE)
@blp.alt_response(404, response="DEFAULT_ERROR", description="不存在或不属于本中心")
def code_svg(code_id: uuid.UUID) -> Any:
    """The bare QR code (SVG) of an active code."""
    code = get_or_404(AggregateQr, code_id, object_type="aggregate_qr")
    return _image(cashier.qr_svg(_active(code)), SVG_MIMETYPE, f"aggregate-qr-{code.id}.svg")


@blp.route("/aggregate-qr/<uuid:code_id>/poster.png", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(PosterArgsSchema, location="query")
@blp.response(200, description="A printable A6/A5 card (300 dpi PNG)", content_type=PNG_MIMETYPE)
@blp.alt_response(404, response="DEFAULT_ERROR", description="不存在或不属于本中心")
def poster_png(args: dict[str, Any], code_id: uuid.UUID) -> Any:
    """A printable card: centre name, the code, "微信/支付宝扫码付款" and the label."""
    code = get_or_404(AggregateQr, code_id, object_type="aggregate_qr")
    body = cashier.poster_png(_active(code), size=args["size"])
    return _image(body, PNG_MIMETYPE, f"aggregate-qr-{code.id}-{args['size']}.png")


@blp.route("/aggregate-qr/<uuid:code_id>/poster.svg", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(PosterArgsSchema, location="query")
@blp.response(200, description="A printable A6/A5 card (SVG, millimetres)", content_type=SVG_MIMETYPE)
@blp.alt_response(404, response="DEFAULT_ERROR", description="不存在或不属于本中心")
def poster_svg(args: dict[str, Any], code_id: uuid.UUID) -> Any:
    """The same card as SVG (vector: prints sharp at any size)."""
    code = get_or_404(AggregateQr, code_id, object_type="aggregate_qr")
    body = cashier.poster_svg(_active(code), size=args["size"])
    return _image(body, SVG_MIMETYPE, f"aggregate-qr-{code.id}-{args['size']}.svg")


def _active(code: AggregateQr) -> AggregateQr:
    if not code.active:
        raise BusinessRuleViolation("该收款码已停用，不能再打印", code="aggregate_qr_revoked")
    return code
