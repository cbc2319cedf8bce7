"""The district's unified registry of family-doctor team members (家庭医生统一注册).

One row per person (doctor, nurse, public-health physician, pharmacist, health manager) who may
serve in a family-doctor team of a centre. Two independent state machines live on the row:

- review (`status`): submitted -> [centre_approved ->] approved, or rejected (with a reason) at
  any level; a rejected registration is resubmitted. `REVIEW_TRANSITIONS` is the only source of
  truth; `app.doctors.services.registration.transition` is the only writer.
- practice (`practice_status`, 执业状态): active 在岗 / suspended 停诊 / left 离岗/离职.

Code lists that are official Chinese names (职称, 执业范围, certificate types) are stored as those
names; machine states (status, sex, team roles) are English codes with Chinese labels.
"""

from app.doctors.models.codes import (
    LICENCE_PATTERNS,
    LUOHU_DIVISION,
    MI_CODE,
    PRACTICE_SCOPES,
    QUALIFICATION_TYPES,
    SEX_LABELS,
    SURNAME_READINGS,
    TITLE_SERIES,
    TITLES,
    Sex,
    is_valid_mi_code,
    licence_problem,
    mi_code_problem,
    name_search_keys,
    title_series,
)
from app.doctors.models.mi import (
    MI_CATEGORY_LABELS,
    MiCategory,
    MiImportBatch,
    MiImportRow,
    MiReconItem,
)
from app.doctors.models.registry import (
    PRACTICE_STATUS_LABELS,
    PRACTICE_TRANSITIONS,
    REVIEW_STATUS_LABELS,
    REVIEW_TRANSITIONS,
    Doctor,
    DoctorHistory,
    DoctorPhoto,
    PracticeStatus,
    ReviewAction,
    ReviewStatus,
    check_practice_transition,
    next_review_status,
)

__all__ = [
    "LICENCE_PATTERNS",
    "LUOHU_DIVISION",
    "MI_CATEGORY_LABELS",
    "MI_CODE",
    "PRACTICE_SCOPES",
    "PRACTICE_STATUS_LABELS",
    "PRACTICE_TRANSITIONS",
    "QUALIFICATION_TYPES",
    "REVIEW_STATUS_LABELS",
    "REVIEW_TRANSITIONS",
    "SEX_LABELS",
    "SURNAME_READINGS",
    "TITLES",
    "TITLE_SERIES",
    "Doctor",
    "DoctorHistory",
    "DoctorPhoto",
    "MiCategory",
    "MiImportBatch",
    "MiImportRow",
    "MiReconItem",
    "PracticeStatus",
    "ReviewAction",
    "ReviewStatus",
    "Sex",
    "check_practice_transition",
    "is_valid_mi_code",
    "licence_problem",
    "mi_code_problem",
    "name_search_keys",
    "next_review_status",
    "title_series",
]
