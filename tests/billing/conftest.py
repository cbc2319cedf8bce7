"""Fixtures of the billing tests (helpers live in tests/billing/factories.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from app.accounts.models import StaffUser
from app.institutions.models import Institution
from payments.base import Channel
from payments.fake import FakeProvider
from tests.audit.support import Http
from tests.billing.factories import forget_fallback_registry, install_fake_providers, make_cashier
from tests.factories import token_for


@pytest.fixture(autouse=True)
def _forget_fallback_registry(app: Flask) -> Iterator[None]:
    yield
    forget_fallback_registry(app)


@pytest.fixture
def fake_providers(app: Flask) -> Iterator[dict[Channel, FakeProvider]]:
    """A fresh `FakeProvider` per channel for this test: {channel: provider}."""
    yield install_fake_providers(app)


@pytest.fixture
def cashier(centre: Institution) -> StaffUser:
    return make_cashier(centre)


@pytest.fixture
def desk(app: Flask, cashier: StaffUser) -> Http:
    """The cashier's HTTP client (bearer token, one application context per request)."""
    return Http(app, token_for(cashier))
