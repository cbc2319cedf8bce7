"""The emulator's own HTTP surface (the control API the demo and the tests use)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from app.integrations.sandbox.wechat_api import EmulatorControl, EmulatorError, RunningEmulator
from app.integrations.sandbox.wechat_state import Fault
from tests.integrations.conftest import APPID, SECRET


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}")


def test_jscode2session_over_http(wechat_emulator: RunningEmulator) -> None:
    code = EmulatorControl(wechat_emulator.url).issue_code("oAlice", "uAlice")
    base = (
        wechat_emulator.url
        + f"sns/jscode2session?appid={APPID}&secret={SECRET}&grant_type=authorization_code"
    )

    status, body = _get(base + f"&js_code={code}")
    assert status == 200
    assert body["openid"] == "oAlice"
    assert body["unionid"] == "uAlice"
    assert body["session_key"]

    status, body = _get(base + f"&js_code={code}")
    assert body == {"errcode": 40029, "errmsg": "invalid code"}


def test_token_over_http(wechat_emulator: RunningEmulator) -> None:
    status, body = _get(
        wechat_emulator.url + f"cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
    )
    assert status == 200
    assert body["expires_in"] == 7200
    assert body["access_token"]

    status, body = _get(
        wechat_emulator.url + f"cgi-bin/token?grant_type=client_credential&appid=other&secret={SECRET}"
    )
    assert body["errcode"] == 40013


def test_scripted_faults_and_reset(wechat_emulator: RunningEmulator) -> None:
    control = EmulatorControl(wechat_emulator.url)
    control.fail_next("jscode2session", Fault(errcode=45011), times=2)
    base = (
        wechat_emulator.url
        + f"sns/jscode2session?appid={APPID}&secret={SECRET}&grant_type=authorization_code"
    )

    assert _get(base + "&js_code=code-oA")[1]["errcode"] == 45011
    assert _get(base + "&js_code=code-oA")[1]["errcode"] == 45011
    assert _get(base + "&js_code=code-oA")[1]["openid"] == "oA"
    assert control.stats()["session_requests"] == 1  # faults answer before the state is asked

    control.reset()
    assert control.stats() == {"token_requests": 0, "session_requests": 0, "sessions_issued": 0}
    assert _get(base + "&js_code=code-oA")[1]["openid"] == "oA"  # "used" was forgotten too


def test_bad_control_requests_are_400(wechat_emulator: RunningEmulator) -> None:
    control = EmulatorControl(wechat_emulator.url)
    with pytest.raises(EmulatorError) as caught:
        control.fail_next("nope", Fault(errcode=1))
    assert caught.value.status == 400
    with pytest.raises(EmulatorError):
        control.issue_code("not an openid!")


def test_unknown_path_is_404(wechat_emulator: RunningEmulator) -> None:
    assert _get(wechat_emulator.url + "cgi-bin/unknown")[0] == 404
