"""Doctors' use cases. The package splits by topic; import from here.

- `common`: settings, the history writer, permissions and query helpers shared by the others;
- `registration`: registration and review (the review state machine), reading registrations;
- `practice`: practice status, profile, 医保医师编码, capacity override, and the signing gate
  `assert_can_sign(doctor)`;
- `photos`: validated photo upload and serving;
- `mi_library`: import of the 医保医师库 list and its reconciliation report;
- `public`: the resident-facing library search (`search_public`) and public profile;
- `library_cache`: the Redis cache of the public library and its O(1) invalidation.

Capacity reservation (`reserve_capacity` / `release_capacity`) touches a doctor and a team, so
it lives in `app.teams.services` (teams depend on doctors, never the other way round).
"""

from __future__ import annotations

from app.doctors.services import library_cache
from app.doctors.services.common import default_capacity, review_levels
from app.doctors.services.mi_library import apply_codes, get_batch, import_list, list_batches, report
from app.doctors.services.photos import public_photo, set_photo, staff_photo
from app.doctors.services.practice import (
    assert_can_sign,
    can_sign,
    set_capacity,
    set_mi_code,
    set_practice_status,
    update_profile,
)
from app.doctors.services.public import public_doctor, search_public
from app.doctors.services.registration import (
    approve,
    doctor_history,
    get_doctor,
    list_doctors,
    my_registration,
    reject,
    resubmit,
    submit,
)

__all__ = [
    "apply_codes",
    "approve",
    "assert_can_sign",
    "can_sign",
    "default_capacity",
    "doctor_history",
    "get_batch",
    "get_doctor",
    "import_list",
    "library_cache",
    "list_batches",
    "list_doctors",
    "my_registration",
    "public_doctor",
    "public_photo",
    "reject",
    "report",
    "resubmit",
    "review_levels",
    "search_public",
    "set_capacity",
    "set_mi_code",
    "set_photo",
    "set_practice_status",
    "staff_photo",
    "submit",
    "update_profile",
]
