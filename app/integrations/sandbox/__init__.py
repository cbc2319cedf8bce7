"""Loopback emulators of external APIs, for tests and demos. Never used in production."""
