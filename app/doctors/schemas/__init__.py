"""Request and response shapes of doctors. Unknown fields are rejected (API-02): in particular a
registration cannot carry `status`, `signed_count`, `mi_doctor_code` or a photo URL (photos are
uploaded as bytes, never fetched from a URL); text containing NUL is a 422.

The package splits by topic (`registration`, `mi`, `library`, `common`); import from here.
"""

from app.doctors.schemas.common import (
    MI_CATEGORIES,
    PRACTICE_STATUSES,
    SEXES,
    STATUSES,
    TextInputSchema,
)
from app.doctors.schemas.library import (
    LibraryCentreSchema,
    LibraryDoctorBriefSchema,
    LibraryDoctorQuerySchema,
    LibraryDoctorSchema,
    LibraryTeamRefSchema,
)
from app.doctors.schemas.mi import (
    DoctorMiCategoryCountSchema,
    DoctorMiDoctorRefSchema,
    DoctorMiImportSchema,
    DoctorMiItemSchema,
    DoctorMiReportQuerySchema,
    DoctorMiUploadSchema,
)
from app.doctors.schemas.registration import (
    DoctorApproveSchema,
    DoctorCapacitySchema,
    DoctorCentreRefSchema,
    DoctorHistorySchema,
    DoctorMiCodeSchema,
    DoctorPhotoUploadSchema,
    DoctorPracticeStatusSchema,
    DoctorProfileUpdateSchema,
    DoctorQualificationOutSchema,
    DoctorQualificationSchema,
    DoctorQuerySchema,
    DoctorRegistrationFieldsSchema,
    DoctorRegistrationSchema,
    DoctorRejectSchema,
    DoctorResubmitSchema,
    DoctorSchema,
)

__all__ = [
    "MI_CATEGORIES",
    "PRACTICE_STATUSES",
    "SEXES",
    "STATUSES",
    "DoctorApproveSchema",
    "DoctorCapacitySchema",
    "DoctorCentreRefSchema",
    "DoctorHistorySchema",
    "DoctorMiCategoryCountSchema",
    "DoctorMiCodeSchema",
    "DoctorMiDoctorRefSchema",
    "DoctorMiImportSchema",
    "DoctorMiItemSchema",
    "DoctorMiReportQuerySchema",
    "DoctorMiUploadSchema",
    "DoctorPhotoUploadSchema",
    "DoctorPracticeStatusSchema",
    "DoctorProfileUpdateSchema",
    "DoctorQualificationOutSchema",
    "DoctorQualificationSchema",
    "DoctorQuerySchema",
    "DoctorRegistrationFieldsSchema",
    "DoctorRegistrationSchema",
    "DoctorRejectSchema",
    "DoctorResubmitSchema",
    "DoctorSchema",
    "LibraryCentreSchema",
    "LibraryDoctorBriefSchema",
    "LibraryDoctorQuerySchema",
    "LibraryDoctorSchema",
    "LibraryTeamRefSchema",
    "TextInputSchema",
]
