"""Printing the agreement, its public verification, and the scanned signed paper copy.

    GET  /api/v1/contracts/{id}/agreement.pdf   print (counts prints and reprints)
    GET  /api/v1/contracts/verify/{token}       public: what the printed QR code answers
    POST /api/v1/contracts/{id}/scanned-copy    upload the signed paper (PDF/JPEG/PNG ≤ 10 MB)
    GET  /api/v1/contracts/{id}/scanned-copy    download the latest scanned copy
    GET  /api/v1/contracts/{id}/attachments     photos and scanned copies (metadata only)

Another centre's contract is a 404 (`app.core.scope.get_or_404`).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, request
from werkzeug.datastructures import FileStorage

from app.contracts.schemas.printing import (
    ContractAttachmentSchema,
    ContractScanUploadSchema,
    ContractVerificationSchema,
    ContractVerifyQuerySchema,
)
from app.contracts.services import printing
from app.contracts.services.core import actor_from_principal
from app.core.api import Blueprint
from app.core.auth import Role
from app.core.db import commit

blp = Blueprint("contracts_printing", __name__, url_prefix="/api/v1", description="家庭医生签约")

# The people who print at the desk or on a home visit, and the centre's administrator.
PRINTERS = [Role.DOCTOR, Role.TEAM_LEADER, Role.NURSE, Role.CENTRE_ADMIN]
# Reading the stored paper copy: the same, plus the district administrator.
READERS = [*PRINTERS, Role.DISTRICT_ADMIN]


def _binary(*types: str, description: str) -> dict[str, Any]:
    return {
        "200": {
            "description": description,
            "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in types},
        }
    }


def _file_response(data: bytes, mimetype: str, filename: str, *, inline: bool) -> Response:
    response = current_app.response_class(data, mimetype=mimetype)
    disposition = "inline" if inline else "attachment"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blp.route("/contracts/<uuid:contract_id>/agreement.pdf", methods=["GET"])
@blp.auth(roles=PRINTERS)
@blp.doc(responses=_binary("application/pdf", description="The agreement (A4 PDF, Chinese, font embedded)"))
@blp.alt_response(404, response="DEFAULT_ERROR", description="未找到该签约")
def agreement_pdf(contract_id: uuid.UUID) -> Response:
    """Print the agreement as signed (签约协议打印).

    Parties, period, packages and fees, every clause as stored at signing, the captured signatures
    (or lines to sign on paper), the agreement hash and a QR code to `GET /contracts/verify/{token}`.
    Each call counts one print: the first is `print`, later ones `reprint` (history and audit).
    Roles: doctor, team_leader, nurse, centre_admin (own centre).
    """
    if request.method == "HEAD":  # a viewer probing the link: not a print
        printing.check_printable(contract_id)
        return _file_response(b"", "application/pdf", "agreement.pdf", inline=True)
    printed = printing.print_agreement(contract_id, actor_from_principal())
    commit()
    return _file_response(printed.data, "application/pdf", printed.filename, inline=True)


@blp.route("/contracts/verify/<string:token>", methods=["GET"])
@blp.auth(public=True)
@blp.arguments(ContractVerifyQuerySchema, location="query")
@blp.response(200, ContractVerificationSchema)
@blp.alt_response(404, response="DEFAULT_ERROR", description="二维码无效")
def verify(args: dict[str, Any], token: str) -> Any:
    """Verify a printed agreement (the QR code on the PDF). Public.

    Answers the contract number, status, period, centre and team — never the resident's name,
    ID number or phone — and, given `sha256`, whether it matches the agreement as signed.
    """
    return printing.verify(token, args.get("sha256"))


@blp.route("/contracts/<uuid:contract_id>/scanned-copy", methods=["POST"])
@blp.auth(roles=PRINTERS)
@blp.arguments(ContractScanUploadSchema, location="files")
@blp.response(201, ContractAttachmentSchema)
@blp.alt_response(409, response="DEFAULT_ERROR", description="签约状态不允许上传")
@blp.alt_response(413, response="DEFAULT_ERROR", description="超过 10 MB")
def upload_scanned_copy(args: dict[str, FileStorage], contract_id: uuid.UUID) -> Any:
    """Attach the scanned signed paper agreement (multipart field `file`: PDF, JPEG or PNG ≤ 10 MB).

    The type is read from the content, never from the name; images are re-encoded (metadata
    dropped); PDFs with scripts or embedded files are refused. Uploading the same file again
    returns the stored copy. Roles: doctor, team_leader, nurse, centre_admin (own centre).
    """
    raw = args["file"].read(printing.MAX_SCAN_BYTES + 1)
    attachment = printing.attach_scanned_copy(contract_id, raw, actor_from_principal())
    commit()
    return attachment


@blp.route("/contracts/<uuid:contract_id>/scanned-copy", methods=["GET"])
@blp.auth(roles=READERS)
@blp.doc(
    responses=_binary("application/pdf", "image/jpeg", "image/png", description="The latest scanned copy")
)
@blp.alt_response(404, response="DEFAULT_ERROR", description="没有扫描件")
def download_scanned_copy(contract_id: uuid.UUID) -> Response:
    """The latest scanned copy of the signed paper. Roles: doctor, team_leader, nurse, centre_admin
    (own centre), district_admin."""
    contract, attachment = printing.latest_scanned_copy(contract_id)
    commit()  # the audit row of the read
    extension = printing.EXTENSIONS.get(attachment.content_type, "bin")
    return _file_response(
        attachment.data,
        attachment.content_type,
        f"agreement-{contract.contract_no}-signed.{extension}",
        inline=False,
    )


@blp.route("/contracts/<uuid:contract_id>/attachments", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, ContractAttachmentSchema(many=True))
def attachments(contract_id: uuid.UUID) -> Any:
    """The contract's signing photos and scanned copies, newest first, without their bytes.
    Roles: doctor, team_leader, nurse, centre_admin (own centre), district_admin."""
    rows = printing.list_attachments(contract_id)
    commit()  # the audit row of the read
    return rows
