"""Contracts request and response schemas."""
