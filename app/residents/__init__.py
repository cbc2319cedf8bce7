"""Residents (居民): registration, households, guardians, consent, transfer between centres."""
