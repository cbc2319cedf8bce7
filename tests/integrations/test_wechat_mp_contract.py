"""One contract for every `MiniProgramAuth`: the fake, and wechatpy against the emulator over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from app.core import clock
from app.integrations.sandbox.wechat_state import Fault
from app.integrations.wechat_mp import (
    InvalidCode,
    ProviderBusy,
    ProviderError,
    RateLimited,
    RiskBlocked,
    WxSession,
)
from tests.integrations.conftest import Harness


def test_issued_code_gives_the_session(harness: Harness) -> None:
    code = harness.control.issue_code("oAlice_01", unionid="uAlice")

    session = harness.adapter.code_to_session(code)

    assert isinstance(session, WxSession)
    assert (session.openid, session.unionid) == ("oAlice_01", "uAlice")
    assert session.session_key
    assert session.session_key not in repr(session)


def test_user_without_unionid(harness: Harness) -> None:
    session = harness.adapter.code_to_session(harness.control.issue_code("oBob"))

    assert session.unionid is None


def test_code_works_once(harness: Harness) -> None:
    code = harness.control.issue_code("oAlice")
    harness.adapter.code_to_session(code)

    with pytest.raises(InvalidCode) as caught:
        harness.adapter.code_to_session(code)
    assert caught.value.errcode == 40029


def test_unknown_code(harness: Harness) -> None:
    with pytest.raises(InvalidCode):
        harness.adapter.code_to_session("never-issued-code")


def test_code_of_the_agreed_shape_works_once(harness: Harness) -> None:
    assert harness.adapter.code_to_session("code-oDemo01").openid == "oDemo01"
    assert harness.adapter.code_to_session("code-oDemo01.2").openid == "oDemo01"
    with pytest.raises(InvalidCode):
        harness.adapter.code_to_session("code-oDemo01")


def test_code_expires_after_five_minutes(harness: Harness) -> None:
    with time_machine.travel(clock.now(), tick=True) as traveller:
        code = harness.control.issue_code("oLate")
        traveller.shift(timedelta(minutes=5, seconds=1))
        with pytest.raises(InvalidCode):
            harness.adapter.code_to_session(code)


def test_code_just_inside_five_minutes_works(harness: Harness) -> None:
    with time_machine.travel(clock.now(), tick=True) as traveller:
        code = harness.control.issue_code("oOnTime")
        traveller.shift(timedelta(minutes=4, seconds=50))
        assert harness.adapter.code_to_session(code).openid == "oOnTime"


@pytest.mark.parametrize(
    ("errcode", "error"),
    [
        (45011, RateLimited),
        (40226, RiskBlocked),
        (-1, ProviderBusy),
        (40163, InvalidCode),
        (40013, ProviderError),
    ],
)
def test_wechat_errcodes_map_to_neutral_errors(
    harness: Harness, errcode: int, error: type[Exception]
) -> None:
    code = harness.control.issue_code("oAlice")
    harness.control.fail_next("jscode2session", Fault(errcode=errcode))

    with pytest.raises(error) as caught:
        harness.adapter.code_to_session(code)

    assert getattr(caught.value, "errcode", None) == errcode
    # The fault was one-off: a fresh code works again.
    assert harness.adapter.code_to_session(harness.control.issue_code("oAlice")).openid == "oAlice"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(http_status=500), ProviderBusy),
        (Fault(http_status=502), ProviderBusy),
        (Fault(http_status=404), ProviderError),
        (Fault(redirect_to="https://attacker.example/steal"), ProviderError),
        (Fault(body="<html>not json"), ProviderError),
        (Fault(body='{"errmsg": "no openid here"}'), ProviderError),
        (Fault(size=200_000), ProviderError),
        (Fault(delay=1.5), ProviderBusy),
    ],
    ids=["500", "502", "404", "redirect", "malformed", "no-openid", "huge", "stall"],
)
def test_transport_faults_are_contained(harness: Harness, fault: Fault, error: type[Exception]) -> None:
    """API-05/API10: no redirect followed, timeouts, malformed and huge answers refused."""
    code = harness.control.issue_code("oAlice")
    harness.control.fail_next("jscode2session", fault)

    with pytest.raises(error):
        harness.adapter.code_to_session(code)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(errcode=-1), ProviderBusy),
        (Fault(errcode=40125), ProviderError),
        (Fault(http_status=503), ProviderBusy),
    ],
)
def test_access_token_failure_on_first_call(harness: Harness, fault: Fault, error: type[Exception]) -> None:
    harness.control.fail_next("token", fault)

    with pytest.raises(error):
        harness.adapter.code_to_session(harness.control.issue_code("oAlice"))
    assert harness.adapter.code_to_session(harness.control.issue_code("oAlice")).openid == "oAlice"
