"""WeChat Pay v2 specifics: official vectors, callback verification, bills, micropay and faults.

The provider-neutral behaviour is in test_contract.py; here the real wechatpy adapter talks over
HTTP to the loopback emulator (payments/sandbox/wechat.py), and the official examples of
spec/payments.md section D pin the signing rules.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wechatpy.crypto import WeChatRefundCrypto
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac, dict_to_xml

from payments.base import (
    ChargeRequest,
    EventKind,
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
)
from payments.sandbox import serve
from payments.sandbox.ledger import SandboxLedger
from payments.sandbox.wechat import (
    CHINA,
    SUCCESS_ACK,
    WeChatPaySandbox,
    encrypt_req_info,
    is_success_ack,
    parse_flat_xml,
    sign,
    signed_xml,
    to_xml,
)
from payments.wechat import WeChatPayProvider, parse_bill
from tests.payments.wechat_support import (
    API_KEY,
    APPID,
    MCH_ID,
    NOTIFY_URL,
    TIMEOUT_DELAY_S,
    WeChatRig,
    make_wechat_rig,
)

# --- official vectors (spec/payments.md D.1, D.2, D.6) ---------------------------------------------

D1_PARAMS = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}
D1_KEY = "192006250b4c09247ec02edce69f6a2d"
D1_MD5 = "9A0A8659F005D6984697E2CA0A9CF3B7"
D1_HMAC = "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"

D6_SAMPLE = """<xml>
  <appid><![CDATA[wx2421b1c4370ec43b]]></appid>
  <attach><![CDATA[支付测试]]></attach>
  <bank_type><![CDATA[CFT]]></bank_type>
  <fee_type><![CDATA[CNY]]></fee_type>
  <is_subscribe><![CDATA[Y]]></is_subscribe>
  <mch_id><![CDATA[10000100]]></mch_id>
  <nonce_str><![CDATA[5d2b6c2a8db53831f7eda20af46e531c]]></nonce_str>
  <openid><![CDATA[oUpF8uMEb4qRXf22hE3X68TekukE]]></openid>
  <out_trade_no><![CDATA[1409811653]]></out_trade_no>
  <result_code><![CDATA[SUCCESS]]></result_code>
  <return_code><![CDATA[SUCCESS]]></return_code>
  <sign><![CDATA[B552ED6B279343CB493C5DD0D78AB241]]></sign>
  <time_end><![CDATA[20140903131540]]></time_end>
  <total_fee>1</total_fee>
  <coupon_fee><![CDATA[10]]></coupon_fee>
  <coupon_count><![CDATA[1]]></coupon_count>
  <coupon_type><![CDATA[CASH]]></coupon_type>
  <coupon_id><![CDATA[10000]]></coupon_id>
  <coupon_fee><![CDATA[100]]></coupon_fee>
  <trade_type><![CDATA[JSAPI]]></trade_type>
  <transaction_id><![CDATA[1004400740201409030005092168]]></transaction_id>
</xml>""".encode()


def test_d1_official_signature_example_md5_and_hmac() -> None:
    assert calculate_signature(D1_PARAMS, D1_KEY) == D1_MD5
    assert calculate_signature_hmac(D1_PARAMS, D1_KEY) == D1_HMAC
    # The emulator signs independently of wechatpy and reproduces both.
    assert sign(D1_PARAMS, D1_KEY) == D1_MD5
    assert sign(D1_PARAMS, D1_KEY, "HMAC-SHA256") == D1_HMAC
    client = WeChatPay(appid=D1_PARAMS["appid"], api_key=D1_KEY, mch_id=D1_PARAMS["mch_id"])
    assert client.parse_payment_result(dict_to_xml(D1_PARAMS, D1_MD5))["body"] == "test"


def test_d2_official_pay_sign_example() -> None:
    provider = WeChatPayProvider(
        appid="wxd678efh567hg6787", mch_id="1230000109", api_key="qazwsxedcrfvtgbyhnujmikolp111111"
    )
    params = provider.client.jsapi.get_jsapi_params(
        "wx2017033010242291fcfe0db70013231072",
        timestamp="1490840662",
        nonce_str="5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    )
    assert params["paySign"] == "22D9B4E54AB1950F51E0649E8810ACD6"
    assert params["signType"] == "MD5"
    unsigned = {k: v for k, v in params.items() if k != "paySign"}
    assert sign(unsigned, "qazwsxedcrfvtgbyhnujmikolp111111") == params["paySign"]


def test_d6_official_sample_is_rejected_for_its_duplicate_tag() -> None:
    provider = WeChatPayProvider(appid="wx2421b1c4370ec43b", mch_id="10000100", api_key=API_KEY)
    with pytest.raises(InvalidCallback) as caught:
        provider.parse_callback(D6_SAMPLE, "text/xml")
    assert caught.value.reason == "duplicate_tag"


# --- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def rig() -> Iterator[WeChatRig]:
    with make_wechat_rig() as built:
        yield built


def _expires(minutes: int = 30) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def _qr(out_trade_no: str, amount: int = 1230, **kw: object) -> ChargeRequest:
    return ChargeRequest(
        out_trade_no=out_trade_no,
        amount_fen=amount,
        subject="家庭医生签约服务包",
        mode=PayMode.MERCHANT_QR,
        client_ip="127.0.0.1",
        expires_at=_expires(),
        notify_url=NOTIFY_URL,
        **kw,  # type: ignore[arg-type]
    )


def _code(out_trade_no: str, auth_code: str, amount: int = 800) -> ChargeRequest:
    return ChargeRequest(
        out_trade_no=out_trade_no,
        amount_fen=amount,
        subject="门诊缴费",
        mode=PayMode.PAYER_CODE,
        client_ip="127.0.0.1",
        expires_at=_expires(),
        auth_code=auth_code,
    )


def _notification(**overrides: str) -> dict[str, str]:
    fields = {
        "appid": APPID,
        "mch_id": MCH_ID,
        "nonce_str": "5d2b6c2a8db53831f7eda20af46e531c",
        "result_code": "SUCCESS",
        "return_code": "SUCCESS",
        "openid": "oUpF8uMEb4qRXf22hE3X68TekukE",
        "is_subscribe": "N",
        "trade_type": "NATIVE",
        "bank_type": "OTHERS",
        "total_fee": "1230",
        "fee_type": "CNY",
        "cash_fee": "1230",
        "transaction_id": "4200000001202611260000000001",
        "out_trade_no": "ORD-1",
        "time_end": "20261126093015",
    }
    fields.update(overrides)
    return fields


def _provider() -> WeChatPayProvider:
    return WeChatPayProvider(appid=APPID, mch_id=MCH_ID, api_key=API_KEY)


# --- callbacks -------------------------------------------------------------------------------------


def test_payment_notification_verifies_and_maps_fields() -> None:
    event = _provider().parse_callback(signed_xml(_notification(), API_KEY), "text/xml")
    assert event.kind is EventKind.PAYMENT
    assert (event.app_id, event.merchant_id, event.notify_id) == (APPID, MCH_ID, None)
    assert event.trade is not None
    assert event.trade.state is TradeState.PAID
    assert event.trade.amount_fen == 1230
    assert event.trade.paid_at == datetime(2026, 11, 26, 1, 30, 15, tzinfo=UTC)
    assert event.trade.payer_id == "oUpF8uMEb4qRXf22hE3X68TekukE"
    assert event.trade.provider_trade_no == "4200000001202611260000000001"


def test_failed_payment_notification_is_not_paid() -> None:
    body = signed_xml(_notification(result_code="FAIL", err_code="NOTENOUGH"), API_KEY)
    event = _provider().parse_callback(body, "text/xml")
    assert event.trade is not None
    assert event.trade.state is TradeState.FAILED
    assert event.trade.paid_at is None


def test_hmac_signed_notification_is_rejected() -> None:
    """wechatpy verifies MD5 only; WeChat signs HMAC notifications, often without sign_type."""
    fields = _notification()
    without_type = to_xml({**fields, "sign": sign(fields, API_KEY, "HMAC-SHA256")})
    with pytest.raises(InvalidCallback) as caught:
        _provider().parse_callback(without_type, "text/xml")
    assert caught.value.reason == "bad_signature"
    typed = {**fields, "sign_type": "HMAC-SHA256"}
    with pytest.raises(InvalidCallback) as caught:
        _provider().parse_callback(to_xml({**typed, "sign": sign(typed, API_KEY, "HMAC-SHA256")}), "text/xml")
    assert caught.value.reason == "unsupported_sign_type"


def _flip_one_byte(body: bytes) -> bytes:
    at = body.index(b"<total_fee>1230") + len(b"<total_fee>")
    return body[:at] + b"9" + body[at + 1 :]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_flip_one_byte(signed_xml(_notification(), API_KEY)), "bad_signature"),
        (to_xml({**_notification(), "sign": ""}), "missing_signature"),
        (to_xml(_notification()), "missing_signature"),
        (  # return_code removed after signing
            signed_xml(_notification(), API_KEY).replace(
                b"<return_code><![CDATA[SUCCESS]]></return_code>", b""
            ),
            "bad_signature",
        ),
        (  # signed without return_code at all
            signed_xml({k: v for k, v in _notification().items() if k != "return_code"}, API_KEY),
            "malformed",
        ),
        (signed_xml(_notification(), "0" * 32), "bad_signature"),  # another merchant's key
        (signed_xml(_notification(appid="wx0000000000000000"), API_KEY), "foreign_merchant"),
        (signed_xml(_notification(mch_id="1900000109"), API_KEY), "foreign_merchant"),
        (b"<xml><return_code>SUCCESS</return_code>", "malformed"),
        (b'{"return_code": "SUCCESS"}', "malformed"),
        (b"", "malformed"),
        (b"<!DOCTYPE xml [<!ENTITY x 'y'>]><xml><a>&x;</a></xml>", "malformed"),
        (b"<xml><a><b>1</b></a></xml>", "malformed"),
        (b"<root><sign>x</sign></root>", "malformed"),
    ],
    ids=[
        "tampered-byte",
        "empty-sign",
        "no-sign",
        "return-code-removed",
        "signed-without-return-code",
        "other-merchant-key",
        "other-appid",
        "other-mch-id",
        "truncated",
        "json",
        "empty",
        "dtd",
        "nested",
        "wrong-root",
    ],
)
def test_notification_variants_are_rejected(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidCallback) as caught:
        _provider().parse_callback(body, "text/xml")
    assert caught.value.reason == reason


def _refund_notification(api_key: str = API_KEY, appid: str = APPID, **inner: str) -> bytes:
    plain = {
        "transaction_id": "4200000001202611260000000001",
        "out_trade_no": "ORD-1",
        "refund_id": "50000000012026112600000000001",
        "out_refund_no": "RF-1",
        "total_fee": "1230",
        "refund_fee": "230",
        "settlement_refund_fee": "230",
        "refund_status": "SUCCESS",
        "success_time": "2026-11-26 10:00:05",
        "refund_recv_accout": "支付用户的零钱",
        "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS",
        "refund_request_source": "API",
        **inner,
    }
    root = to_xml(plain).replace(b"<xml>", b"<root>").replace(b"</xml>", b"</root>")
    return to_xml(
        {
            "return_code": "SUCCESS",
            "appid": appid,
            "mch_id": MCH_ID,
            "nonce_str": "abc",
            "req_info": encrypt_req_info(root, api_key),
        }
    )


def test_refund_notification_decrypts_round_trip() -> None:
    body = _refund_notification()
    # wechatpy's own decryptor reads what the emulator encrypted (AES-256-ECB, key md5(api_key)).
    outer = parse_flat_xml(body)
    assert WeChatRefundCrypto(API_KEY).decrypt_message(outer, APPID, MCH_ID)["out_refund_no"] == "RF-1"
    event = _provider().parse_callback(body, "text/xml")
    assert event.kind is EventKind.REFUND
    assert event.refund is not None
    assert event.refund.state is RefundState.SUCCEEDED
    assert (event.refund.out_trade_no, event.refund.out_refund_no, event.refund.refund_fen) == (
        "ORD-1",
        "RF-1",
        230,
    )
    assert event.refund.succeeded_at == datetime(2026, 11, 26, 2, 0, 5, tzinfo=UTC)
    closed = _provider().parse_callback(
        _refund_notification(refund_status="REFUNDCLOSE", success_time=""), ""
    )
    assert closed.refund is not None
    assert closed.refund.state is RefundState.FAILED


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_refund_notification(api_key="0" * 32), "bad_signature"),
        (_refund_notification(appid="wx0000000000000000"), "foreign_merchant"),
        (
            to_xml(
                {"return_code": "SUCCESS", "appid": APPID, "mch_id": MCH_ID, "req_info": "bm90IGNpcGhlcg=="}
            ),
            "bad_signature",
        ),
        (
            to_xml(
                {
                    "return_code": "SUCCESS",
                    "appid": APPID,
                    "mch_id": MCH_ID,
                    "req_info": base64.b64encode(b"x" * 33).decode(),
                }
            ),
            "bad_signature",
        ),
    ],
    ids=["other-key", "other-appid", "short-ciphertext", "unaligned-ciphertext"],
)
def test_refund_notification_variants_are_rejected(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidCallback) as caught:
        _provider().parse_callback(body, "text/xml")
    assert caught.value.reason == reason


def test_ack_is_pure_xml() -> None:
    ok, fail = _provider().ack(True), _provider().ack(False)
    assert ok.content_type == fail.content_type == "application/xml"
    assert ok.body == SUCCESS_ACK
    assert is_success_ack(ok.status, ok.body)
    assert not is_success_ack(fail.status, fail.body)
    assert not is_success_ack(200, b"SUCCESS")
    assert not is_success_ack(200, b'{"return_code": "SUCCESS"}')
    assert not is_success_ack(500, ok.body)


# --- adapter over HTTP ------------------------------------------------------------------------------


def test_provider_satisfies_the_protocol(rig: WeChatRig) -> None:
    assert isinstance(rig.provider, PaymentProvider)
    assert (rig.provider.app_id, rig.provider.merchant_id) == (APPID, MCH_ID)


def test_native_order_carries_expiry_in_china_time(rig: WeChatRig) -> None:
    request = _qr("NAT-1")
    result = rig.provider.charge(request)
    assert result.state is TradeState.PENDING
    assert result.qr_content is not None
    assert result.qr_content.startswith("weixin://wxpay/bizpayurl?pr=")
    trade = rig.harness.ledger.lookup("NAT-1")
    assert trade is not None
    assert trade.expires_at == int(request.expires_at.timestamp())
    assert trade.extra["product_id"] == "NAT-1"
    assert rig.provider.query("NAT-1").state is TradeState.PENDING


def test_jsapi_params_are_signed_for_the_wallet(rig: WeChatRig) -> None:
    payer = rig.harness.ledger.new_payer()
    request = ChargeRequest(
        "JS-1", 500, "签约费", PayMode.JSAPI, "127.0.0.1", _expires(), notify_url=NOTIFY_URL, payer_id=payer
    )
    result = rig.provider.charge(request)
    params = dict(result.client_params or {})
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["appId"] == APPID
    assert params["package"] == f"prepay_id={rig.harness.jsapi_reference(result)}"
    assert sign({k: v for k, v in params.items() if k != "paySign"}, API_KEY) == params["paySign"]
    rig.harness.ledger.pay_jsapi(rig.harness.jsapi_reference(result), payer)
    status = rig.provider.query("JS-1")
    assert (status.state, status.payer_id, status.amount_fen) == (TradeState.PAID, payer, 500)


def test_emulator_enforces_wechat_request_rules(rig: WeChatRig) -> None:
    client = rig.provider.client
    with pytest.raises(WeChatPayException) as caught:
        client.order.create("JSAPI", "x", "1", NOTIFY_URL, client_ip="127.0.0.1", out_trade_no="R-1")
    assert caught.value.return_msg == "JSAPI支付必须传openid"
    with pytest.raises(WeChatPayException) as caught:
        client.order.create("NATIVE", "x", "1", NOTIFY_URL, client_ip="127.0.0.1", out_trade_no="R-2")
    assert caught.value.return_msg == "NATIVE支付必须传product_id"
    stranger = WeChatPay(appid=APPID, api_key="0" * 32, mch_id=MCH_ID, timeout=5)
    stranger.API_BASE_URL = rig.server.base_url
    try:
        with pytest.raises(WeChatPayException) as caught:
            stranger.order.query(out_trade_no="R-1")
        assert (caught.value.return_code, caught.value.return_msg) == ("FAIL", "签名错误")
        other_app = WeChatPay(appid="wx0000000000000000", api_key=API_KEY, mch_id=MCH_ID, timeout=5)
        other_app.API_BASE_URL = rig.server.base_url
        with pytest.raises(WeChatPayException) as caught:
            other_app.order.query(out_trade_no="R-1")
        assert caught.value.return_code == "FAIL"
        other_app._http.close()
    finally:
        stranger._http.close()
    assert [reason for _, reason in rig.sandbox.rejected] == ["signature", "appid"]
    # A refused request reaches no ledger operation.
    assert rig.harness.ledger.lookup("R-1") is None


def _post(url: str, body: bytes) -> dict[str, str]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=body, method="POST", headers={"Content-Type": "text/xml"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        return parse_flat_xml(response.read())


def test_int_zero_signing_pitfall(rig: WeChatRig) -> None:
    """wechatpy's signer skips falsy values: an int 0 is left out of the signature (and 1.8.18
    even sends it as an empty element), while the string "0" is sent and signed."""
    assert calculate_signature({"a": "1", "b": 0}, API_KEY) == calculate_signature({"a": "1"}, API_KEY)
    assert calculate_signature({"a": "1", "b": "0"}, API_KEY) != calculate_signature({"a": "1"}, API_KEY)
    client = rig.provider.client
    with pytest.raises(WeChatPayException) as caught:
        client.post("pay/orderquery", data={"appid": APPID, "out_trade_no": "Z-1", "device_info": 0})
    assert b"<device_info></device_info>" in caught.value.request.body  # the 0 is lost on the way
    with pytest.raises(WeChatPayException) as caught:
        client.post("pay/orderquery", data={"appid": APPID, "out_trade_no": "Z-1", "device_info": "0"})
    assert b"<device_info>0</device_info>" in caught.value.request.body
    assert caught.value.errcode == "ORDERNOTEXIST"  # sent, signed, verified
    # A "0" on the wire that the signer skipped is a signature error, as at WeChat.
    fields = {"appid": APPID, "mch_id": MCH_ID, "nonce_str": "n1", "out_trade_no": "Z-1"}
    skipped = to_xml({**fields, "device_info": "0", "sign": calculate_signature(fields, API_KEY)})
    assert _post(rig.server.base_url + "pay/orderquery", skipped)["return_msg"] == "签名错误"
    # The adapter stringifies every number it sends.
    payer = rig.harness.ledger.new_payer()
    rig.provider.charge(_code("Z-2", rig.harness.ledger.payer_code(payer), amount=1))
    rig.provider.refund(RefundRequest("Z-2", "ZR-2", 1, 1))
    assert [reason for _, reason in rig.sandbox.rejected] == ["signature"]


# --- micropay ---------------------------------------------------------------------------------------


def test_micropay_success(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer(balance_fen=10_000)
    result = rig.provider.charge(_code("MP-1", ledger.payer_code(payer)))
    assert result.state is TradeState.PAID
    assert (result.paid_amount_fen, result.payer_id) == (800, payer)
    assert result.paid_at is not None
    assert result.paid_at.utcoffset() == timedelta(hours=8)
    assert ledger.charged_fen(payer) == 800


def test_micropay_password_then_paid(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    with time_machine.travel(datetime(2026, 11, 26, 2, 0, tzinfo=UTC), tick=False) as clock:
        result = rig.provider.charge(_code("MP-2", ledger.payer_code(payer, pay_after_s=10)))
        assert result.state is TradeState.PAYING
        assert rig.provider.query("MP-2").state is TradeState.PAYING
        clock.shift(10)
        status = rig.provider.query("MP-2")
    assert status.state is TradeState.PAID
    assert status.paid_at == datetime(2026, 11, 26, 2, 0, 10, tzinfo=UTC)


def test_micropay_never_completes_then_reverse(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    assert (
        rig.provider.charge(_code("MP-3", ledger.payer_code(payer, behaviour="never"))).state
        is TradeState.PAYING
    )
    closing = rig.provider.close("MP-3")  # a 被扫 trade cannot be closed while paying: reverse it
    assert not closing.done
    reversed_ = rig.provider.reverse("MP-3")
    assert reversed_.done and not reversed_.retry and not reversed_.refunded
    assert rig.provider.query("MP-3").state is TradeState.REVERSED
    assert ledger.charged_fen(payer) == 0
    with pytest.raises(ProviderDeclined) as caught:  # an out_trade_no is never reused
        rig.provider.charge(_code("MP-3", ledger.payer_code(payer)))
    assert caught.value.code == "ORDERREVERSED"


def test_reverse_of_a_paid_micropay_returns_the_money(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    rig.provider.charge(_code("MP-4", ledger.payer_code(payer)))
    assert ledger.charged_fen(payer) == 800
    result = rig.provider.reverse("MP-4")
    assert result.done and result.refunded  # the query before the reverse saw it paid
    assert ledger.charged_fen(payer) == 0
    assert ledger.payments_of("MP-4") == 1


@pytest.mark.parametrize(
    ("behaviour", "expected_code", "message_part"),
    [("decline", "NOTENOUGH", "余额不足")],
)
def test_micropay_declines_carry_a_cashier_message(
    rig: WeChatRig, behaviour: str, expected_code: str, message_part: str
) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    with pytest.raises(ProviderDeclined) as caught:
        rig.provider.charge(_code("MP-5", ledger.payer_code(payer, behaviour=behaviour)))  # type: ignore[arg-type]
    assert caught.value.code == expected_code
    assert message_part in caught.value.message
    assert caught.value.message == "付款人余额不足，请让付款人更换付款方式"


def test_micropay_code_rules(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    code = ledger.payer_code(payer)
    assert rig.provider.charge(_code("MP-6", code)).state is TradeState.PAID
    with pytest.raises(ProviderDeclined) as caught:
        rig.provider.charge(_code("MP-7", code))
    assert caught.value.code == "AUTH_CODE_ERROR"
    with pytest.raises(ProviderDeclined) as caught:
        rig.provider.charge(_code("MP-6", ledger.payer_code(payer)))
    assert caught.value.code == "ORDERPAID"
    calls_before = len(ledger.calls)
    with pytest.raises(ProviderDeclined) as caught:  # an Alipay code never reaches WeChat
        rig.provider.charge(_code("MP-8", "281234567890123456"))
    assert caught.value.code == "AUTH_CODE_INVALID"
    assert len(ledger.calls) == calls_before
    with pytest.raises(ProviderDeclined) as caught:  # a well-formed code the wallet never issued
        rig.provider.charge(_code("MP-9", "134567890123456789"))
    assert caught.value.code == "AUTH_CODE_INVALID"
    assert ledger.charged_fen(payer) == 800


# --- faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http_500", "system_error", "bad_signature", "corrupt"])
def test_charge_faults_are_unknown_outcomes(rig: WeChatRig, kind: str) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    ledger.fail_next("charge", kind, apply=True)  # type: ignore[arg-type]
    with pytest.raises(ProviderOutcomeUnknown):
        rig.provider.charge(_code("FA-1", ledger.payer_code(payer)))
    # The charge did happen: only a query can tell.
    assert rig.provider.query("FA-1").state is TradeState.PAID
    assert ledger.payments_of("FA-1") == 1


def test_charge_timeout_is_unknown_and_query_settles_it(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    ledger.fail_next("charge", "timeout", apply=True, delay_s=TIMEOUT_DELAY_S)
    with pytest.raises(ProviderOutcomeUnknown):
        rig.provider.charge(_code("FA-2", ledger.payer_code(payer)))
    assert rig.provider.query("FA-2").state is TradeState.PAID


def test_unapplied_fault_leaves_nothing_behind(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    ledger.fail_next("charge", "http_500", apply=False)
    with pytest.raises(ProviderOutcomeUnknown):
        rig.provider.charge(_qr("FA-3"))
    assert rig.provider.query("FA-3").state is TradeState.NOT_FOUND


@pytest.mark.parametrize("kind", ["http_500", "system_error", "bad_signature", "corrupt"])
def test_query_refund_and_close_faults_are_unknown(rig: WeChatRig, kind: str) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    rig.provider.charge(_code("FA-4", ledger.payer_code(payer)))
    calls: list[tuple[str, Callable[[], object]]] = [
        ("query", lambda: rig.provider.query("FA-4")),
        ("close", lambda: rig.provider.close("FA-4")),
        ("refund", lambda: rig.provider.refund(RefundRequest("FA-4", "FR-4", 800, 100))),
        ("refund_query", lambda: rig.provider.query_refund("FA-4", "FR-4")),
        ("reverse", lambda: rig.provider.reverse("FA-5")),
    ]
    for endpoint, call in calls:
        ledger.fail_next(endpoint, kind)  # type: ignore[arg-type]
        with pytest.raises(ProviderOutcomeUnknown):
            call()


def test_reverse_retry_means_call_again(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    rig.provider.charge(_code("FA-6", ledger.payer_code(payer, behaviour="never")))
    ledger.fail_next("reverse", "retry", times=2)
    first = rig.provider.reverse("FA-6")
    assert (first.done, first.retry) == (False, True)
    assert rig.provider.query("FA-6").state is TradeState.PAYING  # recall=Y reversed nothing
    assert rig.provider.reverse("FA-6").retry
    final = rig.provider.reverse("FA-6")
    assert (final.done, final.retry) == (True, False)
    assert [endpoint for _, endpoint, _ in ledger.calls].count("reverse") == 3


def test_refund_need_retry_is_unknown_and_same_number_succeeds(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    payer = ledger.new_payer()
    rig.provider.charge(_code("FA-7", ledger.payer_code(payer)))
    ledger.fail_next("refund", "retry")
    with pytest.raises(ProviderOutcomeUnknown):
        rig.provider.refund(RefundRequest("FA-7", "FR-7", 800, 300))
    accepted = rig.provider.refund(RefundRequest("FA-7", "FR-7", 800, 300))
    assert accepted.state is RefundState.PROCESSING
    assert (
        rig.provider.refund(RefundRequest("FA-7", "FR-7", 800, 300)).provider_refund_no
        == accepted.provider_refund_no
    )
    with pytest.raises(ProviderDeclined) as caught:
        rig.provider.refund(RefundRequest("FA-7", "FR-8", 800, 600))
    assert caught.value.code == "INVALID_REQUEST"


def test_unreachable_provider_is_unknown() -> None:
    with make_wechat_rig() as built:
        base = built.server.base_url
    provider = WeChatPayProvider(appid=APPID, mch_id=MCH_ID, api_key=API_KEY, api_base=base, timeout=1.0)
    try:
        with pytest.raises(ProviderOutcomeUnknown):
            provider.query("GONE-1")
        with pytest.raises(ProviderOutcomeUnknown):
            provider.download_statement(date(2026, 11, 25))
    finally:
        provider.close_http()


# --- refunds and notifications -------------------------------------------------------------------


def test_refund_lifecycle_with_notification(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    with time_machine.travel(datetime(2026, 11, 26, 2, 0, tzinfo=UTC), tick=False) as clock:
        payer = ledger.new_payer()
        rig.provider.charge(_code("RF-1", ledger.payer_code(payer)))
        assert rig.provider.query_refund("RF-1", "RFN-1").state is RefundState.NOT_FOUND
        rig.provider.refund(RefundRequest("RF-1", "RFN-1", 800, 300, reason="退费\n重复缴费"))
        assert rig.provider.query_refund("RF-1", "RFN-1").state is RefundState.PROCESSING
        clock.shift(5)
        status = rig.provider.query_refund("RF-1", "RFN-1")
        assert status.state is RefundState.SUCCEEDED
        assert status.succeeded_at == datetime(2026, 11, 26, 2, 0, 5, tzinfo=UTC)
        assert rig.provider.query("RF-1").state is TradeState.PAID  # trade_state REFUND
        notices = rig.harness.collect_notifications()
    assert [url for url, _ in rig.delivered] == [NOTIFY_URL]
    event = rig.provider.parse_callback(notices[0][0], notices[0][1])
    assert event.kind is EventKind.REFUND
    assert event.refund is not None
    assert (event.refund.state, event.refund.refund_fen) == (RefundState.SUCCEEDED, 300)
    assert ledger.charged_fen(payer) == 500


def test_notifications_retry_on_wechat_schedule_until_success_xml(rig: WeChatRig) -> None:
    ledger = rig.harness.ledger
    replies = iter([(200, b"success"), (200, b'{"return_code":"SUCCESS"}'), (200, SUCCESS_ACK)])
    bodies: list[bytes] = []

    def transport(url: str, body: bytes) -> tuple[int, bytes]:
        bodies.append(body)
        return next(replies)

    with time_machine.travel(datetime(2026, 11, 26, 2, 0, tzinfo=UTC), tick=False) as clock:
        result = rig.provider.charge(_qr("NT-1"))
        ledger.scan(result.qr_content or "", ledger.new_payer())
        assert rig.sandbox.deliver_due(transport) == 1
        assert rig.sandbox.deliver_due(transport) == 0  # not due yet
        clock.shift(15)
        assert rig.sandbox.deliver_due(transport) == 1
        clock.shift(14)
        assert rig.sandbox.deliver_due(transport) == 0
        clock.shift(1)
        assert rig.sandbox.deliver_due(transport) == 1
        clock.shift(3600)
        assert rig.sandbox.deliver_due(transport) == 0  # acknowledged
    assert len(bodies) == 3
    provider = rig.provider
    events = [provider.parse_callback(body, "text/xml") for body in bodies]
    assert {e.trade.out_trade_no for e in events if e.trade} == {"NT-1"}
    # Every field of the A.3 notification that applies, ints as strings, MD5-signed.
    fields = parse_flat_xml(bodies[0])
    assert {
        "appid",
        "mch_id",
        "nonce_str",
        "sign",
        "sign_type",
        "result_code",
        "openid",
        "is_subscribe",
    } <= set(fields)
    assert {
        "trade_type",
        "bank_type",
        "total_fee",
        "fee_type",
        "cash_fee",
        "transaction_id",
        "time_end",
    } <= set(fields)
    assert fields["total_fee"] == "1230"
    assert sign(fields, API_KEY) == fields["sign"]


def test_control_api_drives_a_payment_over_http(rig: WeChatRig) -> None:
    def call(path: str, body: dict[str, object] | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback
            rig.server.base_url + path,
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    payer = call("_emulator/payers", {"balance_fen": 5000})["payer"]  # type: ignore[index]
    result = rig.provider.charge(_qr("CT-1", amount=1000))
    trade = call("_emulator/scan", {"code_url": result.qr_content, "payer": payer})
    assert trade["state"] == "paid"  # type: ignore[index]
    code = call("_emulator/payer_codes", {"payer": payer, "behaviour": "never"})["code"]  # type: ignore[index]
    assert rig.provider.charge(_code("CT-2", code)).state is TradeState.PAYING
    call("_emulator/faults", {"endpoint": "query", "kind": "system_error"})
    with pytest.raises(ProviderOutcomeUnknown):
        rig.provider.query("CT-1")
    call("_emulator/notify_mode", {"mode": "drop"})
    assert call("_emulator/trades/CT-1")["transaction_id"]  # type: ignore[index]
    assert {t["out_trade_no"] for t in call("_emulator/trades")} == {"CT-1", "CT-2"}  # type: ignore[attr-defined]
    assert [c["endpoint"] for c in call("_emulator/calls")][:2] == ["charge", "charge"]  # type: ignore[attr-defined]
    call("_emulator/reset", {})
    assert call("_emulator/trades") == []


# --- bills -----------------------------------------------------------------------------------------


def _paid_day(rig: WeChatRig) -> date:
    """Three payments and a refund on 2026-11-25 (China time); returns that date."""
    ledger = rig.harness.ledger
    with time_machine.travel(datetime(2026, 11, 25, 1, 0, tzinfo=UTC), tick=False) as clock:
        payer = ledger.new_payer()
        rig.provider.charge(_code("BL-1", ledger.payer_code(payer), amount=990))
        rig.provider.charge(_code("BL-2", ledger.payer_code(payer), amount=12_345))
        result = rig.provider.charge(_qr("BL-3", amount=1))
        ledger.scan(result.qr_content or "", payer)
        rig.provider.refund(RefundRequest("BL-2", "BR-1", 12_345, 345))
        clock.shift(60)
    return date(2026, 11, 25)


def test_bill_download_and_parse(rig: WeChatRig) -> None:
    day = _paid_day(rig)
    with time_machine.travel(datetime(2026, 11, 26, 3, 0, tzinfo=UTC), tick=False):
        statement = rig.provider.download_statement(day)
    assert statement.raw.startswith(b"\xef\xbb\xbf")  # the BOM wechatpy 1.8.18 leaves in place
    payments = {line.out_trade_no: line for line in statement.lines if line.kind is StatementKind.PAYMENT}
    refunds = [line for line in statement.lines if line.kind is StatementKind.REFUND]
    assert {k: v.amount_fen for k, v in payments.items()} == {"BL-1": 990, "BL-2": 12_345, "BL-3": 1}
    assert payments["BL-1"].fee_fen == 6  # 0.05940 yuan
    assert payments["BL-1"].state == "SUCCESS"
    assert payments["BL-1"].occurred_at == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    assert [(r.out_trade_no, r.out_refund_no, r.amount_fen, r.state) for r in refunds] == [
        ("BL-2", "BR-1", 345, "SUCCESS")
    ]
    assert refunds[0].fee_fen == -2
    rig.sandbox.bill_bom = False
    with time_machine.travel(datetime(2026, 11, 26, 3, 0, tzinfo=UTC), tick=False):
        again = rig.provider.download_statement(day)
    assert not again.raw.startswith(b"\xef\xbb\xbf")
    assert again.lines == statement.lines
    assert again.sha1 != statement.sha1


def test_bill_overrides_plant_differences_with_consistent_totals(rig: WeChatRig) -> None:
    day = _paid_day(rig)
    rig.harness.ledger.bill_overrides.update(
        {"BL-1": {"amount_fen": 991}, "BL-3": {"omit": True}, "BR-1": {"state": "PROCESSING"}}
    )
    with time_machine.travel(datetime(2026, 11, 26, 3, 0, tzinfo=UTC), tick=False):
        statement = rig.provider.download_statement(day)
    by_no = {(line.kind, line.out_refund_no or line.out_trade_no): line for line in statement.lines}
    assert by_no[(StatementKind.PAYMENT, "BL-1")].amount_fen == 991
    assert (StatementKind.PAYMENT, "BL-3") not in by_no
    assert by_no[(StatementKind.REFUND, "BR-1")].state == "PROCESSING"


def test_no_bill_for_a_future_date_or_a_quiet_day(rig: WeChatRig) -> None:
    with time_machine.travel(datetime(2026, 11, 26, 3, 0, tzinfo=UTC), tick=False):
        with pytest.raises(StatementNotReady):
            rig.provider.download_statement(date(2026, 11, 27))
        with pytest.raises(StatementNotReady):
            rig.provider.download_statement(date(2026, 11, 20))


@pytest.mark.parametrize("kind", ["corrupt"])
def test_corrupt_bill_is_refused(rig: WeChatRig, kind: str) -> None:
    day = _paid_day(rig)
    rig.harness.ledger.fail_next("bill", kind)  # type: ignore[arg-type]
    with time_machine.travel(datetime(2026, 11, 26, 3, 0, tzinfo=UTC), tick=False):
        with pytest.raises(StatementCorrupt):
            rig.provider.download_statement(day)
        rig.harness.ledger.fail_next("bill", "http_500")
        with pytest.raises(ProviderOutcomeUnknown):
            rig.provider.download_statement(day)
        rig.harness.ledger.fail_next("bill", "system_error")
        with pytest.raises(ProviderOutcomeUnknown):
            rig.provider.download_statement(day)
        assert len(rig.provider.download_statement(day).lines) == 4


BILL = (
    "\ufeff交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注\r\n"
    "`2026-11-25 09:12:01,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000001202611250000000001,`ORD-A,`oA,`NATIVE,"
    '`SUCCESS,`OTHERS,`CNY,`120.00,`0.00,`0,`0,`0.00,`0.00,`,`,`签约服务包,`{"k":1,"v":2},`0.72000,`0.60%,`120.00,`0.00,`\r\n'
    "`2026-11-25 10:00:00,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000001202611250000000001,`ORD-A,`oA,`NATIVE,"
    "`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50300000012026112500000000001,`REF-A,`20.00,`0.00,`ORIGINAL,`SUCCESS,"
    "`签约服务包,`,`-0.12000,`0.60%,`0.00,`20.00,`\r\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n"
    "`2,`120.00,`20.00,`0.00,`0.60000,`120.00,`20.00\r\n"
)


def test_parse_bill_text_with_bom_and_commas_in_fields() -> None:
    lines = parse_bill(BILL)
    assert [(line.kind, line.out_trade_no, line.amount_fen) for line in lines] == [
        (StatementKind.PAYMENT, "ORD-A", 12_000),
        (StatementKind.REFUND, "ORD-A", 2_000),
    ]
    assert lines[0].raw["商户数据包"] == '{"k":1,"v":2}'
    assert lines[0].occurred_at.astimezone(CHINA).hour == 9
    assert lines[1].out_refund_no == "REF-A"


@pytest.mark.parametrize(
    "broken",
    [
        BILL.replace("`2,`120.00", "`3,`120.00"),  # line count
        BILL.replace("`120.00,`0.00,`0,`0", "`120.01,`0.00,`0,`0"),  # a line no longer adds up
        BILL.replace("`0.60000", "`0.60001"),  # fee total
        BILL.replace("`20.00,`0.00,`ORIGINAL", "`20.001,`0.00,`ORIGINAL"),  # not a yuan amount
        BILL.replace("`SUCCESS,`OTHERS", "SUCCESS,`OTHERS", 1),  # field count
        "\n".join(BILL.splitlines()[:-2]),  # summary missing
        "<xml><return_code>FAIL</return_code></xml>",
        "",
    ],
    ids=["count", "sum", "fee", "amount", "fields", "no-summary", "xml", "empty"],
)
def test_parse_bill_refuses_inconsistent_bills(broken: str) -> None:
    with pytest.raises(StatementCorrupt):
        parse_bill(broken)


# --- property: whatever the adapter sends verifies at the emulator ------------------------------------


@pytest.fixture(scope="module")
def shared_rig() -> Iterator[WeChatRig]:
    with make_wechat_rig() as built:
        yield built


_TEXT = st.text(min_size=0, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    out_trade_no=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-|*@",
        min_size=1,
        max_size=32,
    ),
    amount=st.integers(min_value=1, max_value=10**9),
    subject=_TEXT,
    attach=st.one_of(st.none(), _TEXT),
    product_id=st.one_of(st.none(), st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)),
)
def test_requests_always_verify_at_the_emulator(
    shared_rig: WeChatRig,
    out_trade_no: str,
    amount: int,
    subject: str,
    attach: str | None,
    product_id: str | None,
) -> None:
    shared_rig.harness.ledger.reset()
    shared_rig.sandbox.rejected.clear()
    request = ChargeRequest(
        out_trade_no=out_trade_no,
        amount_fen=amount,
        subject=subject,
        mode=PayMode.MERCHANT_QR,
        client_ip="127.0.0.1",
        expires_at=_expires(),
        notify_url=NOTIFY_URL,
        attach=attach,
        product_id=product_id,
    )
    result = shared_rig.provider.charge(request)
    assert result.qr_content
    shared_rig.harness.ledger.scan(result.qr_content, shared_rig.harness.ledger.new_payer(balance_fen=10**10))
    status = shared_rig.provider.query(out_trade_no)  # the reply echoes attach: it must verify too
    assert (status.state, status.amount_fen) == (TradeState.PAID, amount)
    notices = shared_rig.harness.collect_notifications()
    event = shared_rig.provider.parse_callback(notices[-1][0], notices[-1][1])
    assert event.trade is not None
    assert event.trade.amount_fen == amount
    assert shared_rig.sandbox.rejected == []


def test_misconfigured_key_makes_every_reply_unverifiable(rig: WeChatRig) -> None:
    """The emulator refuses the signature (签名错误) and signs its refusal with the real key, which
    the misconfigured adapter cannot verify: nothing it says can be trusted."""
    wrong = WeChatPayProvider(
        appid=APPID, mch_id=MCH_ID, api_key="0" * 32, api_base=rig.server.base_url, timeout=1.0
    )
    try:
        with pytest.raises(ProviderOutcomeUnknown):
            wrong.query("KEY-1")
        with pytest.raises(ProviderOutcomeUnknown):
            wrong.charge(_qr("KEY-1"))
    finally:
        wrong.close_http()
    assert [reason for _, reason in rig.sandbox.rejected] == ["signature", "signature"]
    assert rig.harness.ledger.lookup("KEY-1") is None


# --- one merchant, several WeChat apps (official account + mini-program) ------------------------------

MP_APPID = "wx1f2e3d4c5b6a7980"  # the mini-program's appid (same mch_id, key and certificate)


@dataclass
class MultiAppRig:
    sandbox: WeChatPaySandbox
    provider: WeChatPayProvider
    ledger: SandboxLedger
    base_url: str


@contextmanager
def _multi_app_rig() -> Iterator[MultiAppRig]:
    ledger = SandboxLedger(id_prefix="42000", payer_prefix="o")
    sandbox = WeChatPaySandbox(ledger, appid=APPID, mch_id=MCH_ID, api_key=API_KEY, extra_appids=[MP_APPID])
    server = serve(sandbox)
    provider = WeChatPayProvider(
        appid=APPID,
        mch_id=MCH_ID,
        api_key=API_KEY,
        api_base=server.base_url,
        timeout=1.0,
        refund_notify_url=NOTIFY_URL,
        app_ids={"mp": MP_APPID},
    )
    try:
        yield MultiAppRig(sandbox, provider, ledger, server.base_url)
    finally:
        provider.close_http()
        server.shutdown()
        server.server.server_close()


@pytest.fixture
def apps() -> Iterator[MultiAppRig]:
    with _multi_app_rig() as built:
        yield built


def _jsapi(out_trade_no: str, payer: str, app: str | None, amount: int = 500) -> ChargeRequest:
    return ChargeRequest(
        out_trade_no,
        amount,
        "门诊缴费",
        PayMode.JSAPI,
        "127.0.0.1",
        _expires(),
        notify_url=NOTIFY_URL,
        payer_id=payer,
        app=app,
    )


def test_jsapi_for_the_mini_program_signs_order_and_pay_sign_with_its_appid(apps: MultiAppRig) -> None:
    assert isinstance(apps.provider, PaymentProvider)
    assert apps.provider.app_ids == {"mp": MP_APPID}
    assert apps.provider.appids == {APPID, MP_APPID}
    payer = apps.ledger.new_payer()
    mp = apps.provider.charge(_jsapi("MP-1", payer, "mp"))
    oa = apps.provider.charge(_jsapi("OA-1", payer, None))
    for result, appid, out_trade_no in ((mp, MP_APPID, "MP-1"), (oa, APPID, "OA-1")):
        trade = apps.ledger.lookup(out_trade_no)
        assert trade is not None and trade.extra["appid"] == appid  # the unified order's appid
        assert result.raw["appid"] == appid  # the reply echoes it (and verified against it)
        params = dict(result.client_params or {})
        assert params["appId"] == appid
        assert sign({k: v for k, v in params.items() if k != "paySign"}, API_KEY) == params["paySign"]
    assert apps.sandbox.rejected == []


def test_trade_calls_with_the_mini_program_app_use_its_appid(apps: MultiAppRig) -> None:
    ledger, provider = apps.ledger, apps.provider
    with time_machine.travel(datetime(2026, 11, 26, 2, 0, tzinfo=UTC), tick=False) as clock:
        payer = ledger.new_payer()
        paid = provider.charge(_jsapi("MP-PAY", payer, "mp", amount=800))
        ledger.pay_jsapi(str(paid.raw["prepay_id"]), payer)
        status = provider.query("MP-PAY", app="mp")
        assert (status.state, status.payer_id, status.raw["appid"]) == (TradeState.PAID, payer, MP_APPID)
        accepted = provider.refund(RefundRequest("MP-PAY", "MP-RF-1", 800, 300), app="mp")
        assert accepted.state is RefundState.PROCESSING and accepted.raw["appid"] == MP_APPID
        clock.shift(5)
        assert provider.query_refund("MP-PAY", "MP-RF-1", app="mp").state is RefundState.SUCCEEDED

        provider.charge(_jsapi("MP-OPEN", payer, "mp"))
        closed = provider.close("MP-OPEN", app="mp")
        assert closed.done and closed.raw["appid"] == MP_APPID
        code = ledger.payer_code(payer, behaviour="never")
        assert provider.charge(replace(_code("MP-CODE", code), app="mp")).state is TradeState.PAYING
        clock.shift(20)
        assert provider.reverse("MP-CODE", app="mp").done
    assert apps.sandbox.rejected == []
    trades = {no: apps.ledger.lookup(no) for no in ("MP-OPEN", "MP-CODE")}
    assert {no: (t.state, t.extra["appid"]) for no, t in trades.items() if t} == {
        "MP-OPEN": (TradeState.CLOSED, MP_APPID),
        "MP-CODE": (TradeState.REVERSED, MP_APPID),
    }


def test_a_trade_asked_about_with_another_app_of_the_merchant_is_refused(apps: MultiAppRig) -> None:
    """The emulator refuses to discuss a trade under another of the merchant's appids: a caller that
    forgets the order's app gets an error, never a wrong answer."""
    payer = apps.ledger.new_payer()
    apps.provider.charge(_jsapi("MP-2", payer, "mp"))
    with pytest.raises(ProviderOutcomeUnknown):
        apps.provider.query("MP-2")  # default app
    with pytest.raises(ProviderDeclined) as caught:
        apps.provider.close("MP-2")
    assert caught.value.code == "PARAM_ERROR"
    assert [reason for _, reason in apps.sandbox.rejected] == ["appid_of_trade", "appid_of_trade"]
    assert apps.provider.query("MP-2", app="mp").state is TradeState.PENDING


def test_an_unknown_app_key_is_declined_before_anything_is_sent(apps: MultiAppRig) -> None:
    payer = apps.ledger.new_payer()
    with pytest.raises(ProviderDeclined) as caught:
        apps.provider.charge(_jsapi("XX-1", payer, "alipay-mini"))
    assert caught.value.code == "APP_NOT_CONFIGURED" and "微信支付未配置" in caught.value.message
    for call in (
        lambda: apps.provider.query("XX-1", app="nope"),
        lambda: apps.provider.close("XX-1", app="nope"),
        lambda: apps.provider.reverse("XX-1", app="nope"),
        lambda: apps.provider.refund(RefundRequest("XX-1", "XR-1", 500, 1), app="nope"),
        lambda: apps.provider.query_refund("XX-1", "XR-1", app="nope"),
    ):
        with pytest.raises(ProviderDeclined):
            call()
    assert apps.ledger.lookup("XX-1") is None and apps.ledger.calls == []
    with pytest.raises(ValueError, match="app_ids"):
        WeChatPayProvider(appid=APPID, mch_id=MCH_ID, api_key=API_KEY, app_ids={"mp": ""})


def test_notifications_of_the_mini_program_verify_and_foreign_appids_do_not(apps: MultiAppRig) -> None:
    ledger, provider = apps.ledger, apps.provider
    bodies: list[bytes] = []

    def transport(url: str, body: bytes) -> tuple[int, bytes]:
        bodies.append(body)
        ack = provider.ack(True)
        return ack.status, ack.body

    with time_machine.travel(datetime(2026, 11, 26, 2, 0, tzinfo=UTC), tick=False) as clock:
        payer = ledger.new_payer()
        result = provider.charge(_jsapi("MP-N", payer, "mp"))
        ledger.pay_jsapi(str(result.raw["prepay_id"]), payer)
        provider.refund(RefundRequest("MP-N", "MP-NR", 500, 100), app="mp")
        clock.shift(5)
        provider.query_refund("MP-N", "MP-NR", app="mp")
        assert apps.sandbox.deliver_due(transport) == 2
    payment, refund = (provider.parse_callback(body, "text/xml") for body in bodies)
    assert payment.kind is EventKind.PAYMENT and payment.app_id == MP_APPID  # as sent
    assert payment.trade is not None and payment.trade.state is TradeState.PAID
    assert refund.kind is EventKind.REFUND and refund.app_id == MP_APPID
    assert refund.refund is not None and refund.refund.state is RefundState.SUCCEEDED
    # A notification (signed or encrypted with our key) for an appid the provider was not
    # configured with is foreign: wx0000... for the multi-app provider, and the mini-program's
    # own notifications for a provider that knows only the default app.
    single_app = _provider()
    foreign = [
        (provider, signed_xml(_notification(appid="wx0000000000000000"), API_KEY)),
        (provider, _refund_notification(appid="wx0000000000000000")),
        (single_app, bodies[0]),
        (single_app, bodies[1]),
    ]
    for parser, body in foreign:
        with pytest.raises(InvalidCallback) as caught:
            parser.parse_callback(body, "text/xml")
        assert caught.value.reason == "foreign_merchant"
    # Same key, our mch_id, a mini-program notification built by hand: verified, app_id kept.
    event = provider.parse_callback(signed_xml(_notification(appid=MP_APPID), API_KEY), "text/xml")
    assert event.app_id == MP_APPID


def test_the_emulator_accepts_only_the_appids_it_was_configured_with(apps: MultiAppRig) -> None:
    stranger = WeChatPayProvider(
        appid="wx0000000000000000", mch_id=MCH_ID, api_key=API_KEY, api_base=apps.base_url, timeout=1.0
    )
    try:
        with pytest.raises(ProviderDeclined) as caught:
            stranger.charge(_qr("ST-1"))
        assert caught.value.code == "RETURN_FAIL"
    finally:
        stranger.close_http()
    assert apps.sandbox.rejected == [("/pay/unifiedorder", "appid")]
    assert apps.ledger.lookup("ST-1") is None


def test_the_bill_names_the_app_of_each_trade(apps: MultiAppRig) -> None:
    ledger, provider = apps.ledger, apps.provider
    with time_machine.travel(datetime(2026, 11, 25, 1, 0, tzinfo=UTC), tick=False):
        payer = ledger.new_payer()
        for out_trade_no, app in (("BA-MP", "mp"), ("BA-OA", None)):
            result = provider.charge(_jsapi(out_trade_no, payer, app))
            ledger.pay_jsapi(str(result.raw["prepay_id"]), payer)
    with time_machine.travel(datetime(2026, 11, 26, 3, 0, tzinfo=UTC), tick=False):
        statement = provider.download_statement(date(2026, 11, 25))
    assert {line.out_trade_no: line.raw["公众账号ID"] for line in statement.lines} == {
        "BA-MP": MP_APPID,
        "BA-OA": APPID,
    }
