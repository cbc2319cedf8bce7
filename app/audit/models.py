"""The audit table lives in app.core.audit (it is plumbing shared by every domain)."""
