"""The SMS adapter contract, run on every sender that ships (fake and console)."""

from __future__ import annotations

import logging

import pytest

from notifications import SmsMessage, SmsRejected, SmsSender, SmsUnavailable, render
from notifications.fake import ConsoleSmsSender, FakeSmsSender

PHONE = "13812345678"


def otp(key: str = "k1", phone: str = PHONE, code: str = "123456") -> SmsMessage:
    return SmsMessage.create(
        phone=phone,
        template="otp",
        params={"code": code, "minutes": "5", "purpose": "测试"},
        idempotency_key=key,
    )


@pytest.fixture(params=["fake", "console"])
def sender(request: pytest.FixtureRequest) -> FakeSmsSender | ConsoleSmsSender:
    return FakeSmsSender() if request.param == "fake" else ConsoleSmsSender()


def test_send_records_once_per_idempotency_key(sender: FakeSmsSender | ConsoleSmsSender) -> None:
    first = sender.send(otp("k1"))
    again = sender.send(otp("k1"))
    other = sender.send(otp("k2"))

    assert not first.duplicate
    assert again.duplicate and again.message_id == first.message_id
    assert other.message_id != first.message_id
    assert [m.idempotency_key for m in sender.sent] == ["k1", "k2"]
    assert sender.calls == 3


def test_scripted_failures_then_success(sender: FakeSmsSender | ConsoleSmsSender) -> None:
    sender.fail_next(SmsUnavailable("provider timeout"), times=2)
    for _ in range(2):
        with pytest.raises(SmsUnavailable):
            sender.send(otp())
    assert not sender.send(otp()).duplicate
    assert len(sender.sent) == 1


def test_senders_satisfy_the_protocol(sender: SmsSender) -> None:
    assert isinstance(sender.send(otp()).message_id, str)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"phone": "12345"}, "mobile"),
        ({"phone": "+8613812345678"}, "mobile"),
        ({"template": "marketing"}, "unknown SMS template"),
        ({"params": {"code": "1"}}, "needs parameters"),
        ({"params": {"code": "1", "minutes": "5", "purpose": "x", "extra": "y"}}, "needs parameters"),
        ({"idempotency_key": ""}, "idempotency key"),
    ],
)
def test_invalid_messages_are_rejected(kwargs: dict, reason: str) -> None:
    fields = {
        "phone": PHONE,
        "template": "otp",
        "params": {"code": "1", "minutes": "5", "purpose": "x"},
        "idempotency_key": "k",
    } | kwargs
    with pytest.raises(SmsRejected, match=reason):
        SmsMessage.create(**fields)


def test_render_is_the_approved_template_text() -> None:
    assert render(otp(code="654321")) == (
        "【罗湖社康】您的验证码为654321，5分钟内有效，用于测试。如非本人操作，请忽略本短信。"
    )


def test_fake_helpers() -> None:
    fake = FakeSmsSender()
    fake.send(otp("a", code="111111"))
    fake.send(otp("b", phone="13900000000", code="222222"))
    last = fake.last_to(PHONE)
    assert last is not None and last.params_dict()["code"] == "111111"
    assert fake.texts_to("13900000000") == [render(otp("b", phone="13900000000", code="222222"))]
    assert fake.last_to("13700000000") is None


def test_console_sender_logs_the_text_with_the_number_masked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="notifications.sms"):
        ConsoleSmsSender().send(otp(code="765432"))
    assert "138****5678" in caplog.text
    assert "765432" in caplog.text
    assert PHONE not in caplog.text
