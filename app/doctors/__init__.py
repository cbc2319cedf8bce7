"""Family doctors: registration with review, practice status, the 医保医师库, the public library."""
