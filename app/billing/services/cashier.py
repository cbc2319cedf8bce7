"""The H5 cashier (aggregate QR, one bill's payment link) and the mini-program's JSAPI payments.

- A centre's **aggregate QR** (聚合收款码) encodes `{PAYMENT_PUBLIC_BASE_URL}/pay/c/<token>`; one
  printed code serves both wallets. Staff create, list and revoke them; a revoked code's page
  says so.
- A **bill link** `/pay/o/<bill token>` opens the same cashier for one bill (the desk shows it as
  a QR). Bill and order links carry signed, expiring tokens (itsdangerous), never raw ids.
- The payer sees only bills addressed to them: bills of the residents bound (self or family) to
  the mini-program account with the same WeChat unionid, and bills they already started paying.
  Walk-in payers enter an amount instead: a WALK_IN bill, capped and rate-limited.
- Payment is JSAPI with the payer's openid / buyer id. An open, unexpired JSAPI order of the same
  payer for the same bill is reused (a payer who cancels the wallet sheet and taps again gets the
  same prepay, never a second trade). The front end's "success" only triggers a server query.

Settings (read with defaults): PAYMENT_WALK_IN_MAX_FEN (100000 = 1000 元),
PAYMENT_LINK_TTL_HOURS (24), PAYMENT_POSTER_FONT (a CJK TrueType font for printable PNGs).
"""

from __future__ import annotations

import io
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import or_, select

from app.billing import qr
from app.billing.models import AggregateQr, Bill, BillSource, BillStatus, OrderState, PaymentOrder
from app.billing.services import orders
from app.billing.services.orders import PAYER
from app.billing.services.payer_identity import Payer, public_url
from app.core import audit, clock
from app.core.auth import Actor
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound
from app.institutions.models import Institution
from app.mp_accounts.models import BindingStatus, MpBinding, MpUser
from app.mp_accounts.services import limits
from payments.base import Channel, PayMode, fen_to_yuan

_BILL_SALT = "luohu.pay.bill"
_ORDER_SALT = "luohu.pay.order"
DEFAULT_WALK_IN_MAX_FEN = 100_000
PENDING_BILLS_SHOWN = 20
REUSE_MARGIN = timedelta(minutes=1)  # do not hand out a prepay that expires in under a minute
# Walk-in bills: per payer, per aggregate code, per client address (seconds, count).
WALK_IN_PAYER_LIMITS = ((600, 5), (86400, 20))
WALK_IN_QR_LIMITS = ((3600, 600),)
WALK_IN_IP_LIMITS = ((3600, 60),)
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
POSTER_SIZES = {"A6": (1240, 1748), "A5": (1748, 2480)}  # pixels at 300 dpi
POSTER_CAPTION = "微信/支付宝扫码付款"


def _link_max_age() -> int:
    return int(current_app.config.get("PAYMENT_LINK_TTL_HOURS", 24)) * 3600


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def _link_not_found() -> NotFound:
    return NotFound("付款链接无效或已过期，请向收费处重新获取", code="payment_link_invalid")


def _load_id(token: str, salt: str) -> uuid.UUID:
    if not token or len(token) > 200:
        raise _link_not_found()
    try:
        value = _serializer(salt).loads(token, max_age=_link_max_age())
        return uuid.UUID(str(value))
    except (BadSignature, ValueError):
        raise _link_not_found() from None


# --- links -------------------------------------------------------------------------------------


def bill_token(bill: Bill) -> str:
    return str(_serializer(_BILL_SALT).dumps(str(bill.id)))


def order_token(order: PaymentOrder) -> str:
    return str(_serializer(_ORDER_SALT).dumps(str(order.id)))


def bill_payment_url(bill: Bill) -> str:
    """The H5 cashier link of one bill (for the desk to show as a QR)."""
    return public_url(f"/pay/o/{bill_token(bill)}")


def result_path(order: PaymentOrder) -> str:
    return f"/pay/r/{order_token(order)}"


def bill_from_token(token: str) -> Bill:
    bill = db.session.get(Bill, _load_id(token, _BILL_SALT))
    if bill is None:
        raise _link_not_found()
    return bill


def order_from_token(token: str) -> PaymentOrder:
    order = db.session.get(PaymentOrder, _load_id(token, _ORDER_SALT))
    if order is None:
        raise _link_not_found()
    return order


def centre_name(institution_id: uuid.UUID) -> str:
    centre = db.session.get(Institution, institution_id)
    return centre.name if centre is not None else ""


# --- aggregate QR codes (staff) ----------------------------------------------------------------


def aggregate_url(code: AggregateQr) -> str:
    return public_url(f"/pay/c/{code.token}")


def create_aggregate_qr(*, institution_id: uuid.UUID, label: str, actor: Actor) -> AggregateQr:
    if db.session.get(Institution, institution_id) is None:
        raise BusinessRuleViolation(
            "未找到该社康中心", code="institution_not_found", errors={"institution_id": ["不存在"]}
        )
    code = AggregateQr(
        id=uuid.uuid4(),
        institution_id=institution_id,
        token=secrets.token_urlsafe(16),
        label=label,
        active=True,
        created_by=actor.id,
    )
    db.session.add(code)
    db.session.flush()
    audit.record(
        "aggregate_qr.create", "aggregate_qr", code.id, institution_id=institution_id, detail={"label": label}
    )
    return code


def list_aggregate_qrs(*, include_revoked: bool = False) -> list[AggregateQr]:
    """The codes of the caller's centre (district staff: all), newest first (scope is automatic)."""
    query = select(AggregateQr).order_by(AggregateQr.created_at.desc(), AggregateQr.id)
    if not include_revoked:
        query = query.where(AggregateQr.active.is_(True))
    return list(db.session.execute(query).scalars())


def revoke_aggregate_qr(code: AggregateQr, *, actor: Actor) -> AggregateQr:
    if not code.active:
        raise Conflict("该收款码已停用", code="aggregate_qr_revoked")
    code.active = False
    code.revoked_at = clock.now()
    db.session.flush()
    audit.record(
        "aggregate_qr.revoke",
        "aggregate_qr",
        code.id,
        institution_id=code.institution_id,
        detail={"by": str(actor.id) if actor.id else actor.kind},
    )
    return code


def active_aggregate_qr(token: str) -> AggregateQr:
    """The code behind a scanned URL; unknown and revoked codes are 404 (Chinese)."""
    code = None
    if 8 <= len(token) <= 32:
        code = db.session.execute(select(AggregateQr).where(AggregateQr.token == token)).scalar_one_or_none()
    if code is None or not code.active:
        raise NotFound("该收款码无效或已停用，请联系收费处", code="aggregate_qr_invalid")
    return code


def qr_png(code: AggregateQr) -> bytes:
    return qr.render_png(aggregate_url(code), box_size=10)


def qr_svg(code: AggregateQr) -> bytes:
    return qr.render_svg(aggregate_url(code))


def _poster_font_path() -> str | None:
    configured = current_app.config.get("PAYMENT_POSTER_FONT")
    for candidate in ([configured] if configured else []) + list(_FONT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def poster_png(code: AggregateQr, *, size: str = "A6") -> bytes:
    """A printable card (300 dpi): centre name, the code, "微信/支付宝扫码付款", the label.
    Integer geometry only (this module is on the money path: no floating point)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = POSTER_SIZES[size]
    font_path = _poster_font_path()
    if font_path is None:
        raise BusinessRuleViolation(
            "服务器缺少中文字体，无法生成 PNG 海报，请下载 SVG 版本打印", code="poster_font_missing"
        )
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)

    def centred(text: str, y: int, px: int, fill: str = "black") -> None:
        face = ImageFont.truetype(font_path, px)
        while draw.textbbox((0, 0), text, font=face)[2] * 10 > width * 9 and px > 20:
            px -= 4
            face = ImageFont.truetype(font_path, px)
        text_width = draw.textbbox((0, 0), text, font=face)[2]
        draw.text(((width - text_width) // 2, y), text, font=face, fill=fill)

    unit = width // 20
    centred(centre_name(code.institution_id), unit * 2, unit * 2)
    qr_side = width * 7 // 10
    qr_image = Image.open(io.BytesIO(qr.render_png(aggregate_url(code), box_size=12))).convert("RGB")
    qr_image = qr_image.resize((qr_side, qr_side), Image.Resampling.NEAREST)
    top = unit * 5
    image.paste(qr_image, ((width - qr_side) // 2, top))
    centred(POSTER_CAPTION, top + qr_side + unit, unit * 8 // 5)
    centred(code.label, top + qr_side + unit * 4, unit, fill="#444444")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(300, 300))
    return buffer.getvalue()


def poster_svg(code: AggregateQr, *, size: str = "A6") -> bytes:
    """The same card as SVG (user units are tenths of a millimetre; text rendered by the printer's
    fonts). Integer geometry only."""
    width, height = (1050, 1480) if size == "A6" else (1480, 2100)
    qr_svg_text = qr.render_svg(aggregate_url(code)).decode("utf-8")
    view_box = qr_svg_text.split('viewBox="', 1)[1].split('"', 1)[0]
    start = qr_svg_text.index("<path")
    path = qr_svg_text[start : qr_svg_text.index("/>", start) + 2]
    qr_side = width * 7 // 10
    left, top = (width - qr_side) // 2, height // 5
    font = "'WenQuanYi Micro Hei','Noto Sans CJK SC','PingFang SC','Microsoft YaHei',sans-serif"

    def text(y: int, px: int, content: str, fill: str = "#000") -> str:
        return (
            f'<text x="{width // 2}" y="{y}" font-size="{px}" text-anchor="middle" fill="{fill}" '
            f'font-family="{font}">{escape(content)}</text>'
        )

    body = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width // 10}mm" height="{height // 10}mm" '
        f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="#fff"/>'
        + text(height * 12 // 100, width // 11, centre_name(code.institution_id))
        + f'<svg x="{left}" y="{top}" width="{qr_side}" height="{qr_side}" viewBox="{view_box}">{path}</svg>'
        + text(top + qr_side + height * 9 // 100, width // 13, POSTER_CAPTION)
        + text(top + qr_side + height * 16 // 100, width // 20, code.label, fill="#444")
        + "</svg>"
    )
    return body.encode("utf-8")


# --- what the payer may pay --------------------------------------------------------------------


def _residents_of(payer: Payer) -> list[uuid.UUID]:
    """Residents bound (self or family) to the mini-program account of this WeChat payer."""
    if payer.channel is not Channel.WECHAT:
        return []
    matches = [MpUser.openid == payer.account]
    if payer.unionid:
        matches.append(MpUser.unionid == payer.unionid)
    return list(
        db.session.execute(
            select(MpBinding.resident_id)
            .join(MpUser, MpUser.id == MpBinding.user_id)
            .where(or_(*matches), MpBinding.status == BindingStatus.ACTIVE)
        ).scalars()
    )


def pending_bills(payer: Payer, institution_id: uuid.UUID) -> list[Bill]:
    """Open bills of this centre addressed to this payer: their (family's) bills, and bills they
    already started paying (walk-in amounts, bill links). Nobody else's."""
    started = select(PaymentOrder.bill_id).where(
        PaymentOrder.payer_account == payer.account, PaymentOrder.channel == str(payer.channel)
    )
    addressed = [Bill.id.in_(started)]
    residents = _residents_of(payer)
    if residents:
        addressed.append(Bill.resident_id.in_(residents))
    return list(
        db.session.execute(
            select(Bill)
            .where(Bill.institution_id == institution_id, Bill.status == BillStatus.OPEN, or_(*addressed))
            .order_by(Bill.created_at.desc(), Bill.id)
            .limit(PENDING_BILLS_SHOWN)
        ).scalars()
    )


def walk_in_max_fen() -> int:
    return int(current_app.config.get("PAYMENT_WALK_IN_MAX_FEN", DEFAULT_WALK_IN_MAX_FEN))


def create_walk_in_bill(code: AggregateQr, payer: Payer, *, amount_fen: int, client_ip: str) -> Bill:
    """A bill for an amount the payer typed at an aggregate code (capped, rate-limited)."""
    maximum = walk_in_max_fen()
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or not 1 <= amount_fen <= maximum:
        raise BusinessRuleViolation(
            f"付款金额须在 0.01 元至 {fen_to_yuan(maximum)} 元之间；更大金额请到收费窗口办理",
            code="walk_in_amount_invalid",
            errors={"amount_fen": [f"1–{maximum} 分"]},
        )
    account_key = f"{payer.channel}:{payer.account}"
    rules = [
        limits.Rule(f"pay:rl:walkin:payer:{account_key}:{w}", w, n, "付款过于频繁，请{when}再试")
        for w, n in WALK_IN_PAYER_LIMITS
    ]
    rules += [
        limits.Rule(f"pay:rl:walkin:qr:{code.token}:{w}", w, n, "该收款码使用过于频繁，请{when}再试")
        for w, n in WALK_IN_QR_LIMITS
    ]
    rules += [
        limits.Rule(f"pay:rl:walkin:ip:{client_ip}:{w}", w, n, "付款过于频繁，请{when}再试")
        for w, n in WALK_IN_IP_LIMITS
    ]
    limits.enforce(rules, code="walk_in_rate_limited")
    bill = orders.create_bill(
        institution_id=code.institution_id,
        amount_fen=amount_fen,
        subject=f"{centre_name(code.institution_id)}-{code.label}"[:64],
        actor=PAYER,
        source=BillSource.WALK_IN,
        source_ref=f"aqr:{code.token}:{secrets.token_hex(8)}",
    )
    return bill


def bill_for_aggregate(code: AggregateQr, payer: Payer, token: str) -> Bill:
    """A bill picked on an aggregate code's page: it must be one of the payer's pending bills."""
    bill = bill_from_token(token)
    if bill.id not in {b.id for b in pending_bills(payer, code.institution_id)}:
        raise _link_not_found()
    return bill


@dataclass(frozen=True)
class JsapiStart:
    order: PaymentOrder
    needs_charge: bool  # False: an open prepay of this payer for this bill was reused


def start_jsapi(
    bill: Bill,
    *,
    channel: Channel,
    payer_account: str,
    client_ip: str,
    actor: Actor,
    payer_app: str | None = None,
) -> JsapiStart:
    """The JSAPI order to pay `bill` as this payer: a reusable open one, or a new CREATED order
    (the caller commits it, then charges it through `flows.charge`). `payer_app` is the app the
    payer's openid belongs to (None: the default app; "mp": the mini-program; see
    `app.billing.providers`): WeChat makes and later handles the order with that app's appid."""
    if bill.status != BillStatus.OPEN:
        raise Conflict(
            "该账单已支付" if bill.status == BillStatus.PAID else "该账单已作废，无需支付",
            code="bill_not_open",
        )
    existing = db.session.execute(
        select(PaymentOrder)
        .where(
            PaymentOrder.bill_id == bill.id,
            PaymentOrder.mode == str(PayMode.JSAPI),
            PaymentOrder.channel == str(channel),
            PaymentOrder.payer_account == payer_account,
            PaymentOrder.payer_app.is_(None) if payer_app is None else PaymentOrder.payer_app == payer_app,
            PaymentOrder.state == str(OrderState.PENDING),
            PaymentOrder.expires_at > clock.now() + REUSE_MARGIN,
            PaymentOrder.client_params.is_not(None),
        )
        .order_by(PaymentOrder.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if existing is not None:
        return JsapiStart(existing, needs_charge=False)
    order = orders.start_order(
        bill,
        mode=PayMode.JSAPI,
        channel=channel,
        client_ip=client_ip,
        actor=actor,
        payer_account=payer_account,
        payer_app=payer_app,
    )
    return JsapiStart(order, needs_charge=True)


# --- what the payer sees -----------------------------------------------------------------------

_STATE_TEXT = {
    OrderState.CREATED: "正在确认",
    OrderState.PENDING: "等待付款",
    OrderState.PAYING: "付款确认中",
    OrderState.UNKNOWN: "正在确认",
    OrderState.PAID: "支付成功",
    OrderState.CLOSED: "订单已关闭",
    OrderState.REVERSED: "订单已撤销",
    OrderState.FAILED: "支付失败",
}


def yuan_text(amount_fen: int) -> str:
    return f"¥{fen_to_yuan(amount_fen)}"


def china_time_text(moment: datetime | None) -> str | None:
    return None if moment is None else clock.local(moment).strftime("%Y-%m-%d %H:%M:%S")


def public_bill(bill: Bill) -> dict[str, Any]:
    return {
        "bill": bill_token(bill),
        "subject": bill.subject,
        "amount_fen": bill.amount_fen,
        "amount_text": yuan_text(bill.amount_fen),
        "payer_name": bill.payer_name,
        "created_at": china_time_text(bill.created_at),
    }


def public_order(order: PaymentOrder) -> dict[str, Any]:
    """What the payer's result page may know about an order: no ids, no payer data."""
    state = OrderState(order.state)
    return {
        "order": order_token(order),
        "state": str(state),
        "state_text": _STATE_TEXT[state],
        "final": state.is_final,
        "paid": state is OrderState.PAID,
        "channel": order.channel,
        "amount_fen": order.amount_fen,
        "amount_text": yuan_text(order.amount_fen),
        "subject": order.subject,
        "centre_name": centre_name(order.institution_id),
        "paid_at": china_time_text(order.paid_at),
        "message": order.decline_message if state is OrderState.FAILED else None,
    }


def charge_view(order: PaymentOrder) -> dict[str, Any]:
    """The reply to "pay": the wallet's client parameters and where to go afterwards."""
    return {
        **public_order(order),
        "client_params": dict(order.client_params or {}),
        "result_url": result_path(order),
    }


# --- mini-program --------------------------------------------------------------------------------


def mp_resident_ids(user_id: uuid.UUID) -> list[uuid.UUID]:
    """The residents this mini-program user acts for (self and family), active bindings only."""
    return list(
        db.session.execute(
            select(MpBinding.resident_id).where(
                MpBinding.user_id == user_id, MpBinding.status == BindingStatus.ACTIVE
            )
        ).scalars()
    )


def mp_open_bills(user_id: uuid.UUID) -> Sequence[Bill]:
    residents = mp_resident_ids(user_id)
    if not residents:
        return []
    return list(
        db.session.execute(
            select(Bill)
            .where(Bill.resident_id.in_(residents), Bill.status == BillStatus.OPEN)
            .order_by(Bill.created_at.desc(), Bill.id)
            .limit(100)
        ).scalars()
    )


def mp_bill(user_id: uuid.UUID, bill_id: uuid.UUID) -> Bill:
    """One of the user's (family's) bills; anyone else's is 404 (audited as denied)."""
    bill = db.session.get(Bill, bill_id)
    if bill is None or bill.resident_id is None or bill.resident_id not in mp_resident_ids(user_id):
        if bill is not None:
            audit.record(
                "read", "bill", bill.id, result=audit.DENIED, purpose="cross_owner_access", durable=True
            )
        raise NotFound("未找到该账单", code="bill_not_found")
    return bill


def mp_order(user_id: uuid.UUID, order_id: uuid.UUID) -> PaymentOrder:
    """An order this mini-program user created; anyone else's is 404."""
    order = db.session.get(PaymentOrder, order_id)
    if order is None or order.created_by_kind != "resident" or order.created_by_id != user_id:
        raise NotFound("未找到该支付订单", code="order_not_found")
    return order


def mp_openid(user_id: uuid.UUID) -> str:
    user = db.session.get(MpUser, user_id)
    if user is None:
        raise NotFound("未找到该用户", code="not_found")
    return user.openid
