"""Residents use cases. Later features import from here; these names are stable:

- `get_resident(resident_id) -> Resident`: scoped to the caller's centre, 404 (audited) otherwise;
  does not audit an allowed read (the caller's own use case does, once).
- `find_by_id_number(id_number) -> Resident | None`: unscoped exact lookup through the blind index.
- `require_consent(resident, purpose)`: 403 `consent_required` without an active current consent.
- `age_on(resident, date) -> int` and `population_groups(resident, on=date) -> set[str]`.

The package is split by topic: `residents` (registration, correction, groups and ages),
`records` (view, lookup, search, history, status, unmask),
`families` (guardians, households), `consents`, `transfers`; `common` holds the shared helpers
and the role sets the routes declare.
"""

from app.residents.services.common import (
    DESK_ROLES,
    FINDER_ROLES,
    READER_ROLES,
    TRANSFER_ROLES,
    get_resident,
)
from app.residents.services.consents import (
    active_consent,
    current_versions,
    grant_consent,
    list_consents,
    require_consent,
    revoke_consent,
)
from app.residents.services.families import (
    add_member,
    change_head,
    change_member_relationship,
    create_household,
    dissolve_household,
    get_household,
    list_households,
    remove_guardian,
    remove_member,
    set_guardian,
    view_household,
)
from app.residents.services.records import (
    UNMASK_FIELDS,
    UNMASK_REASONS,
    change_status,
    find_by_id_number,
    list_changes,
    search_residents,
    unmask,
    view_resident,
)
from app.residents.services.residents import (
    age_on,
    create_resident,
    population_groups,
    update_resident,
    visible_groups,
)
from app.residents.services.transfers import list_transfers, transfer_resident

__all__ = [
    "DESK_ROLES",
    "FINDER_ROLES",
    "READER_ROLES",
    "TRANSFER_ROLES",
    "UNMASK_FIELDS",
    "UNMASK_REASONS",
    "active_consent",
    "add_member",
    "age_on",
    "change_head",
    "change_member_relationship",
    "change_status",
    "create_household",
    "create_resident",
    "current_versions",
    "dissolve_household",
    "find_by_id_number",
    "get_household",
    "get_resident",
    "grant_consent",
    "list_changes",
    "list_consents",
    "list_households",
    "list_transfers",
    "population_groups",
    "remove_guardian",
    "remove_member",
    "require_consent",
    "revoke_consent",
    "search_residents",
    "set_guardian",
    "transfer_resident",
    "unmask",
    "update_resident",
    "view_household",
    "view_resident",
    "visible_groups",
]
