"""Fixtures for the mini-program API: a fake WeChat, a recording SMS sender, logged-in residents."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from flask import Flask
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import func, select

from app import jobs
from app.core.db import db
from app.core.outbox import OutboxMessage
from app.institutions.models import Institution
from app.integrations.wechat_mp_fake import FakeMiniProgramAuth
from app.residents.models import Resident
from notifications.fake import FakeSmsSender
from tests.factories import ApiClient, make_centre
from tests.factories_residents import make_resident

PHONE = "13812345678"
NAME = "张三"


@pytest.fixture(autouse=True)
def sms(app: Flask) -> Iterator[FakeSmsSender]:
    fake = FakeSmsSender()
    app.extensions["sms_sender"] = fake
    yield fake
    app.extensions.pop("sms_sender", None)


@pytest.fixture(autouse=True)
def wechat(app: Flask) -> Iterator[FakeMiniProgramAuth]:
    fake = FakeMiniProgramAuth()
    app.extensions["wechat_mp"] = fake
    yield fake
    app.extensions.pop("wechat_mp", None)


@dataclass
class Mp:
    """Helpers for one test: log in WeChat users, run the outbox, read the codes sent."""

    app: Flask
    wechat: FakeMiniProgramAuth
    sms: FakeSmsSender

    def login(self, openid: str = "oAlice") -> ApiClient:
        client = self.app.test_client()
        response = client.post("/mp/v1/auth/login", json={"code": self.wechat.issue_code(openid)})
        assert response.status_code == 200, response.json
        return ApiClient(client, response.json["token"])

    def run_jobs(self) -> int:
        return jobs.work_burst(self.app)

    def code_sent_to(self, phone: str) -> str:
        self.run_jobs()
        message = self.sms.last_to(phone)
        assert message is not None, f"no SMS to {phone}"
        code = message.params_dict()["code"]
        assert re.fullmatch(r"\d{6}", code)
        return code

    def outbox_count(self) -> int:
        return int(db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one())

    def bind_self(self, client: ApiClient, resident: Resident) -> dict:
        response = client.post(
            "/mp/v1/identity/bind", json={"name": resident.name, "id_number": resident.id_number}
        )
        assert response.status_code == 202, response.json
        assert resident.phone is not None
        confirmed = client.post("/mp/v1/identity/confirm", json={"otp": self.code_sent_to(resident.phone)})
        assert confirmed.status_code == 201, confirmed.json
        return dict(confirmed.json)


@pytest.fixture
def mp(app: Flask, wechat: FakeMiniProgramAuth, sms: FakeSmsSender) -> Mp:
    return Mp(app, wechat, sms)


@pytest.fixture
def home_centre() -> Institution:
    return make_centre()


@pytest.fixture
def resident(home_centre: Institution) -> Resident:
    return make_resident(home_centre, name=NAME, phone=PHONE)


@contextmanager
def redis_down(app: Flask) -> Iterator[None]:
    """Point the application at a closed loopback port (REL-04)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    original = app.extensions["redis"]
    app.extensions["redis"] = Redis(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=0.2,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield
    finally:
        app.extensions["redis"].close()
        app.extensions["redis"] = original
