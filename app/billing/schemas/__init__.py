"""Billing request and response schemas."""
