"""Alipay-specific tests: the real python-alipay-sdk 3.4.0 (through `AlipayProvider`) against the
loopback gateway emulator on 127.0.0.1. The provider-neutral behaviour is in test_contract.py."""

from __future__ import annotations

import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from alipay import AliPay
from alipay.exceptions import AliPayException
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.alipay import CHINA, PRODUCTION_GATEWAY, AlipayProvider, parse_trade_bill
from payments.base import (
    ChargeRequest,
    InvalidCallback,
    PaymentProvider,
    PayMode,
    ProviderDeclined,
    ProviderOutcomeUnknown,
    RefundRequest,
    RefundState,
    StatementCorrupt,
    StatementKind,
    StatementNotReady,
    TradeState,
    channel_for_payer_code,
    fen_to_yuan,
    yuan_to_fen,
)
from payments.sandbox import serve
from payments.sandbox.alipay import (
    FORM,
    NOTIFY_SCHEDULE,
    load_private_key,
    load_public_key,
    rsa2_sign,
    rsa2_verify,
    sign_content,
)
from payments.sandbox.keys import cached_key_pair, key_pair_from_private_pem
from tests.payments.alipay_support import (
    APP_ID,
    NOTIFY_URL,
    SELLER_ID,
    AlipayEnv,
    alipay_env,
    foreign_keys,
    session_keys,
)

START = datetime(2026, 3, 10, 10, 0, tzinfo=CHINA)


@pytest.fixture
def env() -> Iterator[AlipayEnv]:
    with alipay_env() as built:
        yield built


def _request(out_trade_no: str, amount_fen: int, mode: PayMode, **kwargs: Any) -> ChargeRequest:
    return ChargeRequest(
        out_trade_no=out_trade_no,
        amount_fen=amount_fen,
        subject="家庭医生签约服务包",
        mode=mode,
        client_ip="127.0.0.1",
        expires_at=datetime.now(UTC) + timedelta(minutes=15),
        notify_url=NOTIFY_URL,
        **kwargs,
    )


def _pay_by_code(env: AlipayEnv, out_trade_no: str, amount_fen: int, **code_kwargs: Any) -> tuple[str, Any]:
    payer = env.sandbox.new_payer()
    code = env.sandbox.payer_code(payer, **code_kwargs)
    return payer, env.provider.charge(_request(out_trade_no, amount_fen, PayMode.PAYER_CODE, auth_code=code))


def _paid_qr(env: AlipayEnv, out_trade_no: str, amount_fen: int) -> str:
    result = env.provider.charge(_request(out_trade_no, amount_fen, PayMode.MERCHANT_QR))
    payer = env.sandbox.new_payer()
    assert result.qr_content is not None
    env.sandbox.ledger.scan(result.qr_content, payer)
    return payer


def _form(body: bytes) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))


def _resign(fields: dict[str, str], private_pem: str) -> bytes:
    """A notification re-signed as Alipay does (all but sign/sign_type) with the given key."""
    unsigned = {k: v for k, v in fields.items() if k not in ("sign", "sign_type")}
    signed = dict(
        unsigned, sign=rsa2_sign(load_private_key(private_pem), sign_content(unsigned)), sign_type="RSA2"
    )
    return urllib.parse.urlencode(signed).encode()


def _control(env: AlipayEnv, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback emulator
        env.server.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        result: dict[str, Any] = json.loads(response.read())
    return result


# --- signing: the doc example of A.8, the SDK and the emulator agree ------------------------------

A8_STRING = (
    'app_id=2014072300007148&biz_content={"button":[{"actionParam":"ZFB_HFCZ","actionType":"out",'
    '"name":"话费充值"},{"name":"查询","subButton":[{"actionParam":"ZFB_YECX","actionType":"out",'
    '"name":"余额查询"},{"actionParam":"ZFB_LLCX","actionType":"out","name":"流量查询"},{"actionParam":'
    '"ZFB_HFCX","actionType":"out","name":"话费查询"}]},{"actionParam":"http://m.alipay.com",'
    '"actionType":"link","name":"最新优惠"}]}&charset=GBK&method=alipay.mobile.public.menu.add'
    "&sign_type=RSA2&timestamp=2014-07-24 03:07:50&version=1.0"
)


def _a8_params() -> dict[str, str]:
    params = dict(pair.split("=", 1) for pair in A8_STRING.split("&"))
    assert len(params) == 7
    return params


def test_string_to_sign_reproduces_the_documented_example() -> None:
    params = _a8_params()
    shuffled = dict(reversed(list(params.items())), sign="ignored-by-the-caller")
    del shuffled["sign"]
    assert sign_content(shuffled) == A8_STRING
    assert sign_content(dict(params, notify_url="")) == A8_STRING  # empty values are dropped


def test_sdk_signs_the_documented_string_with_sign_type_included() -> None:
    app_keys, alipay_keys = session_keys()
    client = AliPay(
        appid="2014072300007148",
        app_private_key_string=app_keys.private_pem,
        alipay_public_key_string=alipay_keys.public_pem,
    )
    signed = dict(urllib.parse.parse_qsl(client.sign_data(_a8_params())))
    signature = signed.pop("sign")
    assert "&".join(f"{k}={v}" for k, v in sorted(signed.items())) == A8_STRING
    assert rsa2_verify(load_public_key(app_keys.public_pem), A8_STRING, signature)
    assert not rsa2_verify(load_public_key(app_keys.public_pem), A8_STRING.replace("GBK", "UTF-8"), signature)


# --- SDK plumbing: gateway override, timestamps ----------------------------------------------------


def test_gateway_override_reaches_the_emulator(env: AlipayEnv) -> None:
    assert env.provider.gateway == env.gateway
    assert env.provider._client._gateway == env.gateway
    before = len(env.sandbox.ledger.calls)
    assert env.provider.query("NO-SUCH-TRADE").state is TradeState.NOT_FOUND
    assert env.sandbox.ledger.calls[before:][0][1:] == ("query", "NO-SUCH-TRADE")
    app_keys, alipay_keys = session_keys()
    default = AlipayProvider(
        app_id=APP_ID,
        seller_id=SELLER_ID,
        app_private_key_pem=app_keys.private_pem,
        alipay_public_key_pem=alipay_keys.public_pem,
    )
    assert default.gateway == PRODUCTION_GATEWAY
    assert isinstance(env.provider, PaymentProvider)
    assert (env.provider.app_id, env.provider.merchant_id) == (APP_ID, SELLER_ID)


@pytest.fixture
def new_york_tz() -> Iterator[None]:
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


@pytest.mark.usefixtures("new_york_tz")
def test_request_timestamp_is_china_time_whatever_the_process_tz(env: AlipayEnv) -> None:
    with time_machine.travel(datetime(2026, 3, 10, 1, 2, 3, tzinfo=UTC), tick=False):
        body = env.provider._client.build_body("alipay.trade.query", {"out_trade_no": "X"})
    assert body["timestamp"] == "2026-03-10 09:02:03"
    assert env.provider.query("X").state is TradeState.NOT_FOUND  # accepted by the emulator
    # The bare SDK stamps local (New York) time: the gateway refuses it, as Alipay would.
    plain = AliPay(
        appid=APP_ID,
        app_private_key_string=env.app_keys.private_pem,
        alipay_public_key_string=env.alipay_keys.public_pem,
    )
    plain._gateway = env.gateway
    with pytest.raises(AliPayException, match=r"isv\.invalid-timestamp"):
        plain.api_alipay_trade_query(out_trade_no="X")


def test_gateway_rejects_tampered_and_foreign_requests(env: AlipayEnv) -> None:
    signed = env.provider._client.sign_data(
        env.provider._client.build_body("alipay.trade.query", {"out_trade_no": "X"})
    )

    def get(query: str) -> dict[str, Any]:
        with urllib.request.urlopen(env.gateway + "?" + query, timeout=5) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read())
        return result

    assert get(signed)["alipay_trade_query_response"]["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    tampered = signed.replace("%22X%22", "%22Y%22")
    assert tampered != signed
    assert get(tampered) == {
        "error_response": {
            "code": "40002",
            "msg": "Invalid Arguments",
            "sub_code": "isv.invalid-signature",
            "sub_msg": "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
        }
    }
    unsigned = "&".join(p for p in signed.split("&") if not p.startswith("sign="))
    assert get(unsigned)["error_response"]["sub_code"] == "isv.missing-signature"
    foreign = env.make_provider(app_id="2021000000009999")
    with pytest.raises(ProviderOutcomeUnknown, match="invalid-app-id"):
        foreign.query("X")
    wrong_app_key = env.make_provider(app_private_key_pem=foreign_keys().private_pem)
    with pytest.raises(ProviderOutcomeUnknown, match="invalid-signature"):
        wrong_app_key.query("X")
    wrong_alipay_key = env.make_provider(alipay_public_key_pem=foreign_keys().public_pem)
    with pytest.raises(ProviderOutcomeUnknown, match="signature verification"):
        wrong_alipay_key.query("X")


# --- money ------------------------------------------------------------------------------------------


def test_yuan_examples() -> None:
    assert yuan_to_fen("0.10") == 10
    assert yuan_to_fen("12.3") == 1230
    assert yuan_to_fen("0.01") == 1
    assert fen_to_yuan(1230) == "12.30"
    for bad in ("0.105", "-1", "1e2", " 1", "1.", ".5", "01.00", "1,00", ""):
        with pytest.raises(ValueError):
            yuan_to_fen(bad)


@settings(database=None, deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_yuan_round_trip(amount_fen: int) -> None:
    text = fen_to_yuan(amount_fen)
    assert yuan_to_fen(text) == amount_fen
    assert yuan_to_fen(text.rstrip("0").rstrip(".") if "." in text else text) == amount_fen


@settings(database=None, deadline=None)
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999))
def test_more_than_two_decimals_is_rejected(whole: int, thousandths: int) -> None:
    with pytest.raises(ValueError):
        yuan_to_fen(f"{whole}.{thousandths:03d}")


# --- 主扫: precreate --------------------------------------------------------------------------------


def test_precreate_trade_exists_only_after_the_scan(env: AlipayEnv) -> None:
    result = env.provider.charge(_request("QR-1", 1230, PayMode.MERCHANT_QR))
    assert result.state is TradeState.PENDING
    assert result.qr_content is not None and result.qr_content.startswith("https://qr.alipay.com/bax")
    assert env.provider.query("QR-1").state is TradeState.NOT_FOUND
    closed = env.provider.close("QR-1")
    assert (closed.done, closed.raw["sub_code"]) == (False, "ACQ.TRADE_NOT_EXIST")  # QR still payable
    assert env.provider.charge(_request("QR-1", 1230, PayMode.MERCHANT_QR)).qr_content == result.qr_content
    payer = env.sandbox.new_payer()
    env.sandbox.ledger.scan(result.qr_content, payer)
    status = env.provider.query("QR-1")
    assert (status.state, status.amount_fen, status.payer_id) == (TradeState.PAID, 1230, payer)
    assert status.paid_at is not None and status.paid_at.tzinfo is not None
    assert env.provider.close("QR-1").already_paid


def test_precreate_with_another_amount_is_unknown_not_declined(env: AlipayEnv) -> None:
    env.provider.charge(_request("QR-2", 500, PayMode.MERCHANT_QR))
    with pytest.raises(ProviderOutcomeUnknown, match="CONTEXT_INCONSISTENT"):
        env.provider.charge(_request("QR-2", 600, PayMode.MERCHANT_QR))


def test_scanned_unpaid_trade_closes_and_cannot_be_paid(env: AlipayEnv) -> None:
    result = env.provider.charge(_request("QR-3", 800, PayMode.MERCHANT_QR))
    assert result.qr_content is not None
    payer = env.sandbox.new_payer()
    with time_machine.travel(START, tick=True) as traveller:
        env.sandbox.ledger.scan(result.qr_content, payer, pay_after_s=30)
        assert env.provider.query("QR-3").state is TradeState.PENDING  # WAIT_BUYER_PAY
        assert env.provider.close("QR-3").done
        traveller.shift(60)
        assert env.provider.query("QR-3").state is TradeState.CLOSED
    assert env.sandbox.ledger.charged_fen(payer) == 0


# --- 被扫: trade.pay ----------------------------------------------------------------------------------


def test_payer_code_paid_at_once(env: AlipayEnv) -> None:
    payer, result = _pay_by_code(env, "BAR-1", 1999)
    assert result.state is TradeState.PAID
    assert (result.paid_amount_fen, result.payer_id) == (1999, payer)
    assert result.provider_trade_no
    assert env.sandbox.ledger.charged_fen(payer) == 1999
    code = env.sandbox.payer_code(payer)
    assert code.startswith("28") and channel_for_payer_code(code) is not None


def test_payer_code_10003_then_polling(env: AlipayEnv) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        _, result = _pay_by_code(env, "BAR-2", 4500, pay_after_s=10)
        assert result.state is TradeState.PAYING
        assert result.raw["code"] == "10003"
        assert env.provider.query("BAR-2").state is TradeState.PENDING
        traveller.shift(5)
        assert env.provider.query("BAR-2").state is TradeState.PENDING
        traveller.shift(6)
        status = env.provider.query("BAR-2")
    assert (status.state, status.amount_fen) == (TradeState.PAID, 4500)
    assert env.sandbox.ledger.payments_of("BAR-2") == 1


@pytest.mark.parametrize(
    ("behaviour", "sub_code", "message"),
    [
        ("decline", "ACQ.BUYER_BALANCE_NOT_ENOUGH", "余额不足"),
        (None, "ACQ.PAYMENT_AUTH_CODE_INVALID", "付款码"),
    ],
)
def test_payer_code_declines(env: AlipayEnv, behaviour: str | None, sub_code: str, message: str) -> None:
    payer = env.sandbox.new_payer()
    code = env.sandbox.payer_code(payer, behaviour=behaviour) if behaviour else "281234567890123456"
    with pytest.raises(ProviderDeclined) as declined:
        env.provider.charge(_request("BAR-3", 100, PayMode.PAYER_CODE, auth_code=code))
    assert declined.value.code == sub_code
    assert message in declined.value.message
    assert env.sandbox.ledger.charged_fen(payer) == 0


def test_cancel_with_retry_flag_then_close(env: AlipayEnv) -> None:
    payer, result = _pay_by_code(env, "BAR-4", 700, behaviour="never")
    assert result.state is TradeState.PAYING
    env.sandbox.ledger.fail_next("reverse", "retry")
    first = env.provider.reverse("BAR-4")
    assert (first.done, first.retry) == (False, True)
    assert env.provider.query("BAR-4").state is TradeState.PENDING  # nothing was done
    second = env.provider.reverse("BAR-4")
    assert (second.done, second.retry, second.refunded, second.raw["action"]) == (True, False, False, "close")
    assert env.provider.query("BAR-4").state is TradeState.CLOSED
    assert env.provider.reverse("BAR-4").raw["action"] == "close"  # repeat: same answer
    assert env.sandbox.ledger.charged_fen(payer) == 0


def test_cancel_of_a_paid_trade_refunds_it(env: AlipayEnv) -> None:
    payer, _ = _pay_by_code(env, "BAR-5", 900)
    result = env.provider.reverse("BAR-5")
    assert (result.done, result.refunded, result.raw["action"]) == (True, True, "refund")
    assert env.sandbox.ledger.charged_fen(payer) == 0
    retried = env.provider.reverse("BAR-5")  # the reply was lost, say: the answer stays "refund"
    assert retried.refunded


def test_cancel_of_an_unknown_trade_and_after_24_hours(env: AlipayEnv) -> None:
    assert env.provider.reverse("NEVER-ARRIVED").done
    with time_machine.travel(START, tick=True) as traveller:
        _pay_by_code(env, "BAR-6", 100, behaviour="never")
        traveller.shift(24 * 3600 + 1)
        with pytest.raises(ProviderDeclined) as declined:
            env.provider.reverse("BAR-6")
    assert declined.value.code == "ACQ.TRADE_CANCEL_TIME_OUT"
    assert "退款" in declined.value.message


# --- JSAPI: trade.create + buyer id ----------------------------------------------------------------


def test_jsapi_create_and_pay(env: AlipayEnv) -> None:
    payer = env.sandbox.new_payer()
    result = env.provider.charge(_request("JS-1", 2500, PayMode.JSAPI, payer_id=payer))
    assert result.state is TradeState.PENDING
    assert result.client_params == {"tradeNO": result.provider_trade_no}
    assert env.provider.query("JS-1").state is TradeState.PENDING  # trade.create exists at once
    env.sandbox.ledger.pay_jsapi(result.client_params["tradeNO"], payer)
    status = env.provider.query("JS-1")
    assert (status.state, status.payer_id, status.provider_trade_no) == (
        TradeState.PAID,
        payer,
        result.provider_trade_no,
    )


def test_jsapi_errors_are_mapped_despite_the_sdk_response_key_bug(env: AlipayEnv) -> None:
    env.sandbox.ledger.fail_next("charge", "system_error", apply=False)
    with pytest.raises(ProviderOutcomeUnknown, match="20000"):
        env.provider.charge(_request("JS-2", 100, PayMode.JSAPI, payer_id="2088000000000077"))
    wrong_app_key = env.make_provider(app_private_key_pem=foreign_keys().private_pem)
    with pytest.raises(ProviderOutcomeUnknown):  # unsigned error_response, no AttributeError
        wrong_app_key.charge(_request("JS-2", 100, PayMode.JSAPI, payer_id="2088000000000077"))
    with pytest.raises(ProviderDeclined) as declined:
        env.provider.charge(_request("JS-2", 0, PayMode.JSAPI, payer_id="2088000000000077"))
    assert declined.value.code == "ACQ.INVALID_PARAMETER"


def test_oauth_code_gives_the_buyer_id_once(env: AlipayEnv) -> None:
    payer = env.sandbox.new_payer()
    code = env.sandbox.oauth_code(payer)
    assert env.provider.oauth_user_id(code) == payer
    with pytest.raises(ProviderDeclined) as declined:
        env.provider.oauth_user_id(code)
    assert declined.value.code == "isv.code-invalid"
    env.sandbox.ledger.fail_next("oauth", "http_500")
    with pytest.raises(ProviderOutcomeUnknown):
        env.provider.oauth_user_id(env.sandbox.oauth_code(payer))


# --- faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["timeout", "http_500", "system_error", "bad_signature", "corrupt", "retry"])
def test_each_fault_is_an_unknown_outcome(env: AlipayEnv, kind: str) -> None:
    payer = env.sandbox.new_payer()
    code = env.sandbox.payer_code(payer)
    env.sandbox.ledger.fail_next("charge", kind, apply=True, delay_s=1.3)  # type: ignore[arg-type]
    with pytest.raises(ProviderOutcomeUnknown):
        env.provider.charge(_request("F-1", 300, PayMode.PAYER_CODE, auth_code=code))
    # The operation went through: only a query tells, and nobody is charged twice.
    assert env.provider.query("F-1").state is TradeState.PAID
    assert env.sandbox.ledger.payments_of("F-1") == 1


@pytest.mark.parametrize("kind", ["timeout", "http_500", "system_error", "bad_signature"])
def test_faults_without_effect(env: AlipayEnv, kind: str) -> None:
    env.provider.charge(_request("F-2", 300, PayMode.MERCHANT_QR))
    env.sandbox.ledger.fail_next("query", kind, apply=False, delay_s=1.3)  # type: ignore[arg-type]
    with pytest.raises(ProviderOutcomeUnknown):
        env.provider.query("F-2")
    assert env.provider.query("F-2").state is TradeState.NOT_FOUND


def test_connection_refused_is_unknown(env: AlipayEnv) -> None:
    dead = env.make_provider(gateway="http://127.0.0.1:9/gateway.do")
    with pytest.raises(ProviderOutcomeUnknown):
        dead.charge(_request("F-3", 100, PayMode.MERCHANT_QR))


# --- refunds ----------------------------------------------------------------------------------------


def test_partial_refunds_complete_and_retry_with_the_same_number(env: AlipayEnv) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        payer, _ = _pay_by_code(env, "RF-1", 1000)
        applied = env.provider.refund(RefundRequest("RF-1", "RF-1-A", 1000, 300, reason="退签"))
        assert (applied.state, applied.refund_fen) == (RefundState.PROCESSING, 300)
        assert applied.raw["fund_change"] == "N"
        # "No data" (too early, or failed): Alipay says apply again with the same number.
        assert env.provider.query_refund("RF-1", "RF-1-A").state is RefundState.FAILED
        traveller.shift(6)
        done = env.provider.query_refund("RF-1", "RF-1-A")
        assert (done.state, done.refund_fen) == (RefundState.SUCCEEDED, 300)
        assert done.succeeded_at is not None
        again = env.provider.refund(RefundRequest("RF-1", "RF-1-A", 1000, 300))
        assert again.state is RefundState.SUCCEEDED  # same number: the same refund, not a second one
        assert env.sandbox.ledger.charged_fen(payer) == 700
        with pytest.raises(ProviderDeclined) as exceeds:
            env.provider.refund(RefundRequest("RF-1", "RF-1-B", 1000, 800))
        assert exceeds.value.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
        assert exceeds.value.message == "退款金额超过可退金额"
        with pytest.raises(ProviderDeclined) as mismatch:
            env.provider.refund(RefundRequest("RF-1", "RF-1-A", 1000, 200))
        assert mismatch.value.code == "ACQ.DISCORDANT_REPEAT_REQUEST"
    assert env.provider.query("RF-1").state is TradeState.PAID  # partially refunded: still TRADE_SUCCESS


def test_failed_refund_is_failed_and_reapplying_succeeds(env: AlipayEnv) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        payer, _ = _pay_by_code(env, "RF-2", 500)
        env.sandbox.ledger.script_refund("RF-2-A", "fail")
        env.provider.refund(RefundRequest("RF-2", "RF-2-A", 500, 500))
        traveller.shift(6)
        assert env.provider.query_refund("RF-2", "RF-2-A").state is RefundState.FAILED
        assert env.sandbox.ledger.charged_fen(payer) == 500
        assert env.provider.refund(RefundRequest("RF-2", "RF-2-A", 500, 500)).state is RefundState.PROCESSING
        traveller.shift(6)
        assert env.provider.query_refund("RF-2", "RF-2-A").state is RefundState.SUCCEEDED
        assert env.provider.query("RF-2").state is TradeState.CLOSED  # fully refunded: TRADE_CLOSED
    assert env.sandbox.ledger.charged_fen(payer) == 0


def test_refund_of_unknown_trade_and_refund_faults(env: AlipayEnv) -> None:
    with pytest.raises(ProviderDeclined) as declined:
        env.provider.refund(RefundRequest("NOPE", "NOPE-R", 100, 100))
    assert declined.value.code == "ACQ.TRADE_NOT_EXIST"
    assert env.provider.query_refund("NOPE", "NOPE-R").state is RefundState.NOT_FOUND
    _pay_by_code(env, "RF-3", 100)
    env.sandbox.ledger.fail_next("refund", "system_error")
    with pytest.raises(ProviderOutcomeUnknown):
        env.provider.refund(RefundRequest("RF-3", "RF-3-A", 100, 100))
    assert env.provider.refund(RefundRequest("RF-3", "RF-3-A", 100, 100)).state is RefundState.PROCESSING
    env.sandbox.ledger.fail_next("refund_query", "bad_signature")
    with pytest.raises(ProviderOutcomeUnknown):
        env.provider.query_refund("RF-3", "RF-3-A")


# --- notifications ------------------------------------------------------------------------------


def _one_notification(env: AlipayEnv) -> bytes:
    notes = env.harness.collect_notifications()
    assert len(notes) == 1
    body, content_type = notes[0]
    assert content_type == FORM
    return body


def test_payment_notification_is_verified_and_parsed(env: AlipayEnv) -> None:
    payer = _paid_qr(env, "N-1", 1230)
    body = _one_notification(env)
    event = env.provider.parse_callback(body, FORM)
    fields = _form(body)
    assert event.trade is not None
    assert (event.trade.state, event.trade.amount_fen, event.trade.payer_id) == (TradeState.PAID, 1230, payer)
    assert (event.app_id, event.merchant_id, event.notify_id) == (APP_ID, SELLER_ID, fields["notify_id"])
    assert event.trade.refunded_fen is None
    assert fields["trade_status"] == "TRADE_SUCCESS" and fields["notify_type"] == "trade_status_sync"
    assert fields["subject"] == "家庭医生签约服务包"
    assert env.provider.ack(True).body == b"success"
    assert env.provider.ack(False).body == b"fail"
    assert env.provider.ack(True).content_type.startswith("text/plain")


def test_notification_signature_covers_everything_but_sign_and_sign_type(env: AlipayEnv) -> None:
    _paid_qr(env, "N-2", 1230)
    fields = _form(_one_notification(env))
    signature = fields.pop("sign")
    assert fields.pop("sign_type") == "RSA2"
    public = load_public_key(env.alipay_keys.public_pem)
    assert rsa2_verify(public, sign_content(fields), signature)
    assert not rsa2_verify(public, sign_content(dict(fields, sign_type="RSA2")), signature)


def test_tampered_and_unsigned_notifications_are_rejected(env: AlipayEnv) -> None:
    _paid_qr(env, "N-3", 1230)
    body = _one_notification(env)
    fields = _form(body)
    cases = {
        "flipped amount": urllib.parse.urlencode(dict(fields, total_amount="12.31")).encode(),
        "other trade": urllib.parse.urlencode(dict(fields, out_trade_no="N-4")).encode(),
        "no sign": urllib.parse.urlencode({k: v for k, v in fields.items() if k != "sign"}).encode(),
        "empty sign": urllib.parse.urlencode(dict(fields, sign="")).encode(),
        "garbage sign": urllib.parse.urlencode(dict(fields, sign="not base64!")).encode(),
        "RSA1 claimed": urllib.parse.urlencode(dict(fields, sign_type="RSA")).encode(),
        "foreign key": _resign(fields, foreign_keys().private_pem),
        "app key": _resign(fields, env.app_keys.private_pem),
        "extra field": body + b"&gmt_refund=2026-03-10+10%3A00%3A00",
    }
    for name, variant in cases.items():
        with pytest.raises(InvalidCallback) as rejected:
            env.provider.parse_callback(variant, FORM)
        assert rejected.value.reason == "bad_signature", name
    with pytest.raises(InvalidCallback) as duplicate:
        env.provider.parse_callback(body + b"&total_amount=12.30", FORM)
    assert duplicate.value.reason == "duplicate_field"
    for content_type, payload in (("application/json", body), (FORM, b"\xff\xfe"), (FORM, b"a=1&&=")):
        with pytest.raises(InvalidCallback) as malformed:
            env.provider.parse_callback(payload, content_type)
        assert malformed.value.reason == "malformed"
    assert (
        env.provider.parse_callback(body, "application/x-www-form-urlencoded;charset=utf-8").trade is not None
    )


def test_foreign_merchant_and_bad_amount_notifications(env: AlipayEnv) -> None:
    _paid_qr(env, "N-5", 1230)
    fields = _form(_one_notification(env))
    alipay_private = env.alipay_keys.private_pem
    for variant in ({"seller_id": "2088999999999999"}, {"app_id": "2021000000009999"}):
        with pytest.raises(InvalidCallback) as foreign:
            env.provider.parse_callback(_resign(dict(fields, **variant), alipay_private), FORM)
        assert foreign.value.reason == "foreign_merchant"
    other_seller = env.make_provider(seller_id="2088999999999999")
    with pytest.raises(InvalidCallback) as foreign_seller:
        other_seller.parse_callback(_resign(fields, alipay_private), FORM)
    assert foreign_seller.value.reason == "foreign_merchant"
    for amount in ("12.305", "1e3", "-12.30", "12,30", ""):
        with pytest.raises(InvalidCallback) as bad:
            env.provider.parse_callback(_resign(dict(fields, total_amount=amount), alipay_private), FORM)
        assert bad.value.reason == "bad_amount", amount
    with pytest.raises(InvalidCallback) as bad_refund:
        env.provider.parse_callback(_resign(dict(fields, refund_fee="0.001"), alipay_private), FORM)
    assert bad_refund.value.reason == "bad_amount"
    waiting = env.provider.parse_callback(
        _resign(dict(fields, trade_status="WAIT_BUYER_PAY"), alipay_private), FORM
    )
    assert waiting.trade is not None and waiting.trade.state is TradeState.PENDING
    with pytest.raises(InvalidCallback):
        env.provider.parse_callback(_resign(dict(fields, trade_status="PAID_MAYBE"), alipay_private), FORM)


def test_refund_notifications_carry_refund_fee(env: AlipayEnv) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        _paid_qr(env, "N-6", 1000)
        env.harness.collect_notifications()
        env.provider.refund(RefundRequest("N-6", "N-6-A", 1000, 400))
        traveller.shift(6)
        partial = env.provider.parse_callback(_one_notification(env), FORM)
        env.provider.refund(RefundRequest("N-6", "N-6-B", 1000, 600))
        traveller.shift(6)
        full_body = _one_notification(env)
        full = env.provider.parse_callback(full_body, FORM)
    assert partial.trade is not None and full.trade is not None
    assert (partial.trade.state, partial.trade.refunded_fen) == (TradeState.PAID, 400)
    assert (full.trade.state, full.trade.refunded_fen, full.trade.amount_fen) == (
        TradeState.CLOSED,
        1000,
        1000,
    )
    assert full.trade.paid_at is not None  # closed after payment, i.e. refunded
    assert _form(full_body)["out_biz_no"] == "N-6-B"


def test_failed_refund_is_not_notified(env: AlipayEnv) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        _paid_qr(env, "N-7", 1000)
        env.harness.collect_notifications()
        env.sandbox.ledger.script_refund("N-7-A", "fail")
        env.provider.refund(RefundRequest("N-7", "N-7-A", 1000, 1000))
        traveller.shift(6)
        assert env.harness.collect_notifications() == []


def test_retry_schedule_and_constant_notify_id(env: AlipayEnv) -> None:
    replies = iter([(200, b"SUCCESS"), (500, b"success"), (200, b"ok"), (200, b"success")])
    bodies: list[bytes] = []

    def transport(_url: str, body: bytes) -> tuple[int, bytes]:
        bodies.append(body)
        return next(replies)

    with time_machine.travel(START, tick=False) as traveller:
        _paid_qr(env, "N-8", 1230)
        assert env.sandbox.deliver_due(transport) == 1
        for delay in NOTIFY_SCHEDULE[:3]:
            traveller.shift(delay - 1)
            assert env.sandbox.deliver_due(transport) == 0  # not before the next slot
            traveller.shift(1)
            assert env.sandbox.deliver_due(transport) == 1
        traveller.shift(86400)
        assert env.sandbox.deliver_due(transport) == 0  # acknowledged by the exact body "success"
    assert len(bodies) == 4
    notify_ids = {_form(body)["notify_id"] for body in bodies}
    assert len(notify_ids) == 1
    assert len({_form(body)["notify_time"] for body in bodies}) == 4
    for body in bodies:
        assert env.provider.parse_callback(body, FORM).notify_id in notify_ids
    assert NOTIFY_SCHEDULE == (240, 600, 600, 3600, 7200, 21600, 54000)


def test_default_transport_posts_to_a_loopback_url(env: AlipayEnv) -> None:
    received: list[tuple[str, bytes]] = []

    def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        received.append((environ["CONTENT_TYPE"], environ["wsgi.input"].read(length)))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"success"]

    shop_server = serve(shop)
    try:
        result = env.provider.charge(
            ChargeRequest(
                "N-9",
                100,
                "x",
                PayMode.MERCHANT_QR,
                "127.0.0.1",
                datetime.now(UTC) + timedelta(minutes=5),
                notify_url=shop_server.base_url + "callbacks/alipay",
            )
        )
        assert result.qr_content is not None
        env.sandbox.ledger.scan(result.qr_content, env.sandbox.new_payer())
        assert env.sandbox.deliver_due() == 1
        assert env.sandbox.deliver_due() == 0
    finally:
        shop_server.shutdown()
        shop_server.server.server_close()
    assert len(received) == 1 and received[0][0].startswith("application/x-www-form-urlencoded")
    assert env.provider.parse_callback(received[0][1], received[0][0]).trade is not None


# --- bills --------------------------------------------------------------------------------------------


def test_trade_bill_download_and_parse(env: AlipayEnv) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        _pay_by_code(env, "B-1", 1000)
        _pay_by_code(env, "B-2", 2550)
        _paid_qr(env, "B-3", 300)
        env.provider.refund(RefundRequest("B-2", "B-2-R", 2550, 550))
        traveller.shift(6)
        _, paying = _pay_by_code(env, "B-4", 100, behaviour="never")  # never paid: not in the bill
        assert paying.state is TradeState.PAYING
        traveller.shift(86400)
        statement = env.provider.download_statement(START.date())
    assert statement.bill_date == START.date()
    payments = {line.out_trade_no: line for line in statement.lines if line.kind is StatementKind.PAYMENT}
    refunds = [line for line in statement.lines if line.kind is StatementKind.REFUND]
    assert {k: v.amount_fen for k, v in payments.items()} == {"B-1": 1000, "B-2": 2550, "B-3": 300}
    assert payments["B-2"].fee_fen == 15  # 0.6 % of 25.50, rounded
    assert payments["B-1"].state == "交易"
    assert payments["B-1"].occurred_at.date() == START.date()
    assert [(r.out_trade_no, r.out_refund_no, r.amount_fen, r.state) for r in refunds] == [
        ("B-2", "B-2-R", 550, "退款")
    ]
    assert statement.sha1 and len(statement.raw) > 0
    with zipfile.ZipFile(io.BytesIO(statement.raw)) as archive:
        texts = [archive.read(name).decode("gbk") for name in archive.namelist()]
    assert any("#交易合计：3笔，退款合计：1笔" in text for text in texts)
    assert any(text.startswith("#支付宝业务汇总查询") for text in texts)


def test_bill_overrides_and_missing_bills(env: AlipayEnv) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        _pay_by_code(env, "B-5", 1000)
        _pay_by_code(env, "B-6", 2000)
        _pay_by_code(env, "B-7", 3000)
        env.sandbox.ledger.bill_overrides.update(
            {"B-5": {"amount_fen": 999}, "B-6": {"omit": True}, "B-7": {"state": "交易关闭"}}
        )
        traveller.shift(86400)
        lines = {line.out_trade_no: line for line in env.provider.download_statement(START.date()).lines}
        assert set(lines) == {"B-5", "B-7"}
        assert lines["B-5"].amount_fen == 999
        assert lines["B-7"].state == "交易关闭"
        with pytest.raises(StatementNotReady):
            env.provider.download_statement(START.date() - timedelta(days=1))  # no trades that day
        with pytest.raises(StatementNotReady):
            env.provider.download_statement(START.date() + timedelta(days=5))  # the future


def test_corrupt_bill_and_expired_url(env: AlipayEnv) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        _pay_by_code(env, "B-8", 1000)
        traveller.shift(86400)
        env.sandbox.ledger.fail_next("bill", "corrupt")
        with pytest.raises(StatementCorrupt):
            env.provider.download_statement(START.date())
        biz = {"bill_type": "trade", "bill_date": START.date().isoformat()}
        reply = env.provider._client.server_api("alipay.data.dataservice.bill.downloadurl.query", biz)
        url = reply["bill_download_url"]
        assert url.startswith(env.server.base_url)
        traveller.shift(31)
        with pytest.raises(urllib.error.HTTPError) as expired:
            urllib.request.urlopen(url, timeout=5)  # noqa: S310 - loopback emulator
        expired.value.close()
        assert expired.value.code == 404
        env.sandbox.ledger.fail_next("bill", "timeout", delay_s=1.3)
        with pytest.raises(ProviderOutcomeUnknown):
            env.provider.download_statement(START.date())


def test_bill_parser_checks_the_totals(env: AlipayEnv) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        _pay_by_code(env, "B-9", 1000)
        traveller.shift(86400)
        content = env.sandbox.bill_zip(START.date())
    assert content is not None
    assert [line.amount_fen for line in parse_trade_bill(content)] == [1000]
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    edits: list[Callable[[str], str]] = [
        lambda text: text.replace("#交易合计：1笔", "#交易合计：2笔"),  # totals disagree with the lines
        lambda text: text.replace("业务明细列表结束", "到此为止"),  # truncated: no end marker
        lambda text: text.replace(",10.00,", ",10.001,"),  # not a yuan amount
    ]
    for edit in edits:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, edit(data.decode("gbk")).encode("gbk"))
        with pytest.raises(StatementCorrupt):
            parse_trade_bill(buffer.getvalue())
    with pytest.raises(StatementCorrupt):
        parse_trade_bill(b"PK\x03\x04 not really")


# --- control API and keys ---------------------------------------------------------------------------


def test_control_api_drives_a_payment(env: AlipayEnv) -> None:
    payer = _control(env, "POST", "_emulator/payers", {"balance_fen": 5000})["payer_id"]
    assert payer.startswith("2088") and len(payer) == 16
    code = _control(env, "POST", "_emulator/payer-codes", {"payer_id": payer})["code"]
    assert code.startswith("28")
    assert (
        env.provider.charge(_request("C-1", 1000, PayMode.PAYER_CODE, auth_code=code)).state
        is TradeState.PAID
    )
    qr = env.provider.charge(_request("C-2", 1000, PayMode.MERCHANT_QR)).qr_content
    scanned = _control(env, "POST", "_emulator/scan", {"qr_code": qr, "payer_id": payer})
    assert (scanned["out_trade_no"], scanned["trade_status"]) == ("C-2", "TRADE_SUCCESS")
    created = env.provider.charge(_request("C-3", 1000, PayMode.JSAPI, payer_id=payer))
    assert created.client_params is not None
    paid = _control(env, "POST", "_emulator/jsapi-pay", {"trade_no": created.client_params["tradeNO"]})
    assert paid["state"] == "paid"
    assert _control(env, "GET", f"_emulator/payers/{payer}") == {
        "payer_id": payer,
        "balance_fen": 2000,
        "charged_fen": 3000,
    }
    auth_code = _control(env, "POST", "_emulator/oauth-codes", {"payer_id": payer})["auth_code"]
    assert env.provider.oauth_user_id(auth_code) == payer
    _control(env, "POST", "_emulator/faults", {"endpoint": "query", "kind": "system_error"})
    with pytest.raises(ProviderOutcomeUnknown):
        env.provider.query("C-1")
    assert _control(env, "POST", "_emulator/notify-mode", {"mode": "drop"}) == {"mode": "drop"}
    assert _control(env, "POST", "_emulator/deliver")["delivered"] == 3  # to NOTIFY_URL: refused
    trades = _control(env, "GET", "_emulator/trades")["trades"]
    assert {t["out_trade_no"] for t in trades} == {"C-1", "C-2", "C-3"}
    _control(env, "POST", "_emulator/reset")
    assert _control(env, "GET", "_emulator/trades") == {"trades": []}
    with pytest.raises(urllib.error.HTTPError) as bad:
        _control(env, "POST", "_emulator/faults", {"endpoint": "nowhere", "kind": "timeout"})
    bad.value.close()
    assert bad.value.code == 400


def test_cached_key_pairs(tmp_path: Any) -> None:
    first = cached_key_pair(tmp_path, "app")
    again = cached_key_pair(tmp_path, "app")
    assert first == again
    assert first.private_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert first.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_pair_from_private_pem(first.private_pem) == first
    assert oct((tmp_path / "app.pem").stat().st_mode & 0o777) == "0o600"
    assert cached_key_pair(tmp_path, "alipay") != first
    with pytest.raises(ValueError):
        cached_key_pair(tmp_path, "../escape")
    # The SDK loads these PEM keys as they are (header, body, footer).
    client = AliPay(
        appid="1", app_private_key_string=first.private_pem, alipay_public_key_string=first.public_pem
    )
    assert client.appid == "1"


def test_bill_date_is_a_china_day(env: AlipayEnv) -> None:
    # 23:30 China time on the 10th is 15:30 UTC: the payment belongs to the bill of the 10th.
    late = datetime(2026, 3, 10, 23, 30, tzinfo=CHINA)
    with time_machine.travel(late, tick=True) as traveller:
        _pay_by_code(env, "B-10", 100)
        traveller.shift(12 * 3600)
        lines = env.provider.download_statement(date(2026, 3, 10)).lines
    assert [line.out_trade_no for line in lines] == ["B-10"]
    assert lines[0].occurred_at.astimezone(CHINA).hour == 23
