"""Residents (居民), households (家庭/户), guardians, consents, and their history.

- `codes`: every code list with its Chinese labels (ID types, statuses, population groups,
  relationships, consent purposes, legal bases, channels, history actions);
- `identity`: the pure identity rules (ID numbers, derived sex and birth date, ages, pinyin);
- `residents`, `households`, `consents`: the tables.

Personal data (DATA-01): the ID number, phone and both addresses are `EncryptedString` columns;
the ID number and phone also carry an HMAC blind index (set by attribute events, so a value and
its index can never disagree). The name stays in clear for search and is masked in every
response. History rows record *which* fields changed, never their values.

Import from this package (`from app.residents.models import Resident`); the modules are an
implementation detail.
"""

from app.residents.models.codes import (
    ADULT_AGE,
    CHANGE_ACTION_LABELS,
    CHILD_0_6,
    CONSENT_CHANNELS,
    CONSENT_GRANTORS,
    CONSENT_PURPOSES,
    DERIVING_ID_TYPES,
    ELDERLY_65,
    GENERAL,
    GROUPS,
    GUARDIAN_CONSENT_AGE,
    GUARDIAN_RELATIONSHIPS,
    HEAD,
    HOUSEHOLD_RELATIONSHIPS,
    ID_TYPE_LABELS,
    ID_TYPE_NATIONAL_CODES,
    LEGAL_BASIS_LABELS,
    POPULATION_GROUPS,
    SEX_LABELS,
    SPECIAL_GROUP_CODES,
    STAFF_CONSENT_CHANNELS,
    STATUS_LABELS,
    STATUS_TRANSITIONS,
    STORED_GROUP_CODES,
    ConsentPurpose,
    IdType,
    LegalBasis,
    PopulationGroup,
    ResidentStatus,
)
from app.residents.models.consents import ResidentConsent
from app.residents.models.households import Household, HouseholdMember
from app.residents.models.identity import (
    Identity,
    IdentityError,
    name_initials,
    normalise_id_number,
    parse_identity,
    years_between,
)
from app.residents.models.residents import Resident, ResidentChange, ResidentGroup, ResidentTransfer

__all__ = [
    "ADULT_AGE",
    "CHANGE_ACTION_LABELS",
    "CHILD_0_6",
    "CONSENT_CHANNELS",
    "CONSENT_GRANTORS",
    "CONSENT_PURPOSES",
    "DERIVING_ID_TYPES",
    "ELDERLY_65",
    "GENERAL",
    "GROUPS",
    "GUARDIAN_CONSENT_AGE",
    "GUARDIAN_RELATIONSHIPS",
    "HEAD",
    "HOUSEHOLD_RELATIONSHIPS",
    "ID_TYPE_LABELS",
    "ID_TYPE_NATIONAL_CODES",
    "LEGAL_BASIS_LABELS",
    "POPULATION_GROUPS",
    "SEX_LABELS",
    "SPECIAL_GROUP_CODES",
    "STAFF_CONSENT_CHANNELS",
    "STATUS_LABELS",
    "STATUS_TRANSITIONS",
    "STORED_GROUP_CODES",
    "ConsentPurpose",
    "Household",
    "HouseholdMember",
    "IdType",
    "Identity",
    "IdentityError",
    "LegalBasis",
    "PopulationGroup",
    "Resident",
    "ResidentChange",
    "ResidentConsent",
    "ResidentGroup",
    "ResidentStatus",
    "ResidentTransfer",
    "name_initials",
    "normalise_id_number",
    "parse_identity",
    "years_between",
]
