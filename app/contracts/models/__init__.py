"""Contracts models. Every model is re-exported here so Alembic sees it."""

from app.contracts.models.agreements import AgreementClause, AgreementTemplate, ClauseKind, TemplateStatus
from app.contracts.models.contracts import (
    CONTRACT_TRANSITIONS,
    OCCUPYING_STATUSES,
    Contract,
    ContractAttachment,
    ContractEvent,
    ContractPackage,
    ContractSignature,
    ContractStatus,
    SignatureRole,
    SigningChannel,
    SigningWay,
)
from app.contracts.models.packages import PackageItem, PackageKind, PackageStatus, ServicePackage

__all__ = [
    "CONTRACT_TRANSITIONS",
    "OCCUPYING_STATUSES",
    "AgreementClause",
    "AgreementTemplate",
    "ClauseKind",
    "Contract",
    "ContractAttachment",
    "ContractEvent",
    "ContractPackage",
    "ContractSignature",
    "ContractStatus",
    "PackageItem",
    "PackageKind",
    "PackageStatus",
    "ServicePackage",
    "SignatureRole",
    "SigningChannel",
    "SigningWay",
    "TemplateStatus",
]
