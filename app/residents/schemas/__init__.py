"""Request and response shapes of residents, households, guardians, consents and transfers.

Requests reject unknown fields (API-02); responses mask every personal field (DATA-02). Split by
topic: `residents`, `households`, `codes`, with the shared pieces in `common`.
"""

from app.residents.schemas.codes import ResidentCodesSchema, code_lists
from app.residents.schemas.households import (
    HeadChangeSchema,
    HouseholdCreateSchema,
    HouseholdMemberInputSchema,
    HouseholdQuerySchema,
    HouseholdRelationshipSchema,
    HouseholdSchema,
)
from app.residents.schemas.residents import (
    ConsentGrantSchema,
    ConsentRevokeSchema,
    GuardianRequestSchema,
    ResidentChangeSchema,
    ResidentConsentSchema,
    ResidentCreateSchema,
    ResidentHistoryQuerySchema,
    ResidentQuerySchema,
    ResidentSchema,
    ResidentStatusChangeSchema,
    ResidentSummarySchema,
    ResidentTransferSchema,
    ResidentUnmaskResultSchema,
    ResidentUnmaskSchema,
    ResidentUpdateSchema,
    TransferRequestSchema,
)

__all__ = [
    "ConsentGrantSchema",
    "ConsentRevokeSchema",
    "GuardianRequestSchema",
    "HeadChangeSchema",
    "HouseholdCreateSchema",
    "HouseholdMemberInputSchema",
    "HouseholdQuerySchema",
    "HouseholdRelationshipSchema",
    "HouseholdSchema",
    "ResidentChangeSchema",
    "ResidentCodesSchema",
    "ResidentConsentSchema",
    "ResidentCreateSchema",
    "ResidentHistoryQuerySchema",
    "ResidentQuerySchema",
    "ResidentSchema",
    "ResidentStatusChangeSchema",
    "ResidentSummarySchema",
    "ResidentTransferSchema",
    "ResidentUnmaskResultSchema",
    "ResidentUnmaskSchema",
    "ResidentUpdateSchema",
    "TransferRequestSchema",
    "code_lists",
]
