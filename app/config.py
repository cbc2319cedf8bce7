"""Settings, read from environment variables only.

Every setting has a development default so that `make run` works on a fresh machine with no
configuration. Secrets keep well-known *development* values that production mode refuses: a
production start with any of them (or with SQLite, or with the embedded fakeredis) fails fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Development-only secrets. Production refuses to start while any of these is in use.
DEV_SECRET_KEY = "dev-only-secret-key-change-me"  # noqa: S105 - refused in production
DEV_FIELD_KEYS = "dev1:ZGV2LW9ubHktZmllbGQta2V5LTMyLWJ5dGVzLSEhISE="  # 32 bytes, base64
DEV_BLIND_INDEX_KEY = "dev-only-blind-index-key-change-me"
DEV_AUDIT_HMAC_KEY = "dev-only-audit-chain-key-change-me"
DEV_WECHATPAY_API_KEY = "sandbox-wechatpay-api-key-0000000"[:32]

_DEV_SECRETS = {
    "SECRET_KEY": DEV_SECRET_KEY,
    "FIELD_ENCRYPTION_KEYS": DEV_FIELD_KEYS,
    "BLIND_INDEX_KEY": DEV_BLIND_INDEX_KEY,
    "AUDIT_HMAC_KEY": DEV_AUDIT_HMAC_KEY,
    "WECHATPAY_API_KEY": DEV_WECHATPAY_API_KEY,
}
DEV_SECRET_NAMES = frozenset(_DEV_SECRETS)


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    kind: type = str
    doc: str = ""


# The configuration table in the README is generated from this list (`flask config-table`).
SETTINGS: tuple[Setting, ...] = (
    Setting("APP_ENV", "development", str, "`development`, `test` or `production`."),
    Setting("SECRET_KEY", DEV_SECRET_KEY, str, "Flask secret; production refuses the dev default."),
    Setting(
        "DATABASE_URL",
        "",
        str,
        "SQLAlchemy URL, e.g. `postgresql+psycopg://user@host/db`. Empty: SQLite file `instance/luohu.db`.",
    ),
    Setting("DB_POOL_SIZE", 5, int, "Connections per process (PostgreSQL)."),
    Setting("DB_MAX_OVERFLOW", 5, int, "Extra connections per process under burst (PostgreSQL)."),
    Setting("REDIS_URL", "", str, "`redis://host:port/db`. Empty: embedded fakeredis (development only)."),
    Setting(
        "FIELD_ENCRYPTION_KEYS",
        DEV_FIELD_KEYS,
        str,
        "Comma-separated `keyid:base64(32 bytes)` AES-256-GCM keys; old ones stay for decryption.",
    ),
    Setting(
        "FIELD_ENCRYPTION_ACTIVE_KEY", "", str, "Key id used for new ciphertexts (default: last listed)."
    ),
    Setting(
        "BLIND_INDEX_KEY", DEV_BLIND_INDEX_KEY, str, "HMAC key of the blind indexes (never rotated casually)."
    ),
    Setting("AUDIT_HMAC_KEY", DEV_AUDIT_HMAC_KEY, str, "HMAC key of the audit hash chain."),
    Setting("CORS_ORIGINS", "", str, "Comma-separated origins allowed by CORS (none by default)."),
    Setting("SESSION_IDLE_MINUTES", 15, int, "Staff session idle timeout."),
    Setting("SESSION_ABSOLUTE_HOURS", 12, int, "Staff session absolute lifetime."),
    Setting("ACCESS_TOKEN_MINUTES", 30, int, "Lifetime of one staff access token (refresh for a new one)."),
    Setting("LOGIN_MAX_FAILURES", 5, int, "Wrong passwords in a row that lock a staff account."),
    Setting("LOGIN_LOCK_MINUTES", 15, int, "How long a locked staff account stays locked."),
    Setting("IDEMPOTENCY_TTL_HOURS", 48, int, "How long idempotency keys are kept (at least 24)."),
    Setting("LOG_LEVEL", "INFO", str, "Python log level."),
    Setting("LOG_JSON", True, bool, "Structured JSON logs (set 0 for plain text while developing)."),
    Setting("RQ_ASYNC", True, bool, "Enqueue jobs to rq; 0 runs them inline (tests of single jobs)."),
    Setting("DEMO_PASSWORD_SEED", "", str, "Optional seed making `flask seed-demo` passwords reproducible."),
    Setting(
        "RESIDENT_CONSENT_VERSIONS",
        "regional_platform_sharing:1,online_services:1,sms_notifications:1",
        str,
        "Current consent-text version per purpose (`purpose:version`, comma-separated); a new version "
        "needs a new consent from every resident.",
    ),
    Setting(
        "WECHAT_MP_APPID",
        "",
        str,
        "Mini-program AppID. Empty outside production: the WeChat emulator (if `WECHAT_API_BASE`) or "
        "the in-process fake, both accepting `wx.login` codes of the shape `code-<openid>`.",
    ),
    Setting("WECHAT_MP_SECRET", "", str, "Mini-program AppSecret (from the vault in production)."),
    Setting(
        "WECHAT_API_BASE",
        "",
        str,
        "WeChat API base URL. Empty: `https://api.weixin.qq.com/`. The loopback emulator "
        "(`flask wechat-sandbox`): `http://127.0.0.1:8790/`. Production requires https.",
    ),
    Setting("MP_TOKEN_IDLE_MINUTES", 120, int, "Resident (mini-program) token idle timeout."),
    Setting("MP_TOKEN_ABSOLUTE_HOURS", 24, int, "Resident token absolute lifetime (then a silent re-login)."),
    Setting(
        "SMS_BACKEND",
        "console",
        str,
        "`console` (log the text, send nothing) or `fake` (record in memory). Production refuses "
        "both until a provider adapter lands: its SMS stay in the outbox.",
    ),
    Setting(
        "SMS_DAILY_BUDGET",
        20000,
        int,
        "SMS per China calendar day for the whole system; past it, requests get 429 and the alarm fires.",
    ),
    Setting(
        "SMS_BUDGET_ALARM_PERCENT", 80, int, "Share of the daily SMS budget that fires the alarm (ERROR log)."
    ),
    Setting(
        "DOCTOR_REVIEW_LEVELS",
        "centre",
        str,
        "Review of doctor registrations: `centre` (the centre admin approves) or `centre,district` "
        "(centre admin, then district admin).",
    ),
    Setting(
        "REQUIRE_MI_DOCTOR_CODE",
        True,
        bool,
        "Refuse signing by a doctor without a valid 医保医师编码 (D + 6-digit division + 6 digits).",
    ),
    Setting(
        "DOCTOR_CAPACITY_DEFAULT",
        2000,
        int,
        "Residents one family doctor may sign unless the doctor has an override; a team's default cap "
        "is the sum of its GPs' caps.",
    ),
    Setting(
        "DOCTOR_LIBRARY_CACHE_SECONDS",
        300,
        int,
        "TTL of cached public doctor-library responses (changes invalidate them at once anyway).",
    ),
    # --- payments (issue 4) --------------------------------------------------------------------
    Setting(
        "PAYMENT_SANDBOX",
        True,
        bool,
        "Run the loopback WeChat Pay and Alipay emulators in-process and point the real SDKs at them "
        "(no merchant account needed). Production refuses it.",
    ),
    Setting(
        "PAYMENT_PUBLIC_BASE_URL",
        "http://127.0.0.1:5000",
        str,
        "Public base URL of this service: notify URLs (`/callbacks/...`), H5 cashier links and the "
        "aggregate QR codes are built on it. Production requires https.",
    ),
    Setting("PAYMENT_TIMEOUT_SECONDS", 10, int, "Timeout of each call to WeChat Pay / Alipay."),
    Setting(
        "PAYMENT_ORDER_TTL_MINUTES",
        15,
        int,
        "How long a QR / JSAPI payment order can be paid before it is closed.",
    ),
    Setting(
        "PAYMENT_RECOVERY_AFTER_MINUTES",
        10,
        int,
        "The recovery job (补单) queries orders still pending or unknown this long after creation (PAY-08).",
    ),
    Setting(
        "WECHATPAY_APPID",
        "wxd930ea5d5a258f4f",
        str,
        "WeChat Pay default AppID (the official account of the H5 cashier); mini-program payments use `WECHAT_MP_APPID`.",
    ),
    Setting("WECHATPAY_MCH_ID", "10000100", str, "WeChat Pay merchant id (商户号)."),
    Setting(
        "WECHATPAY_API_KEY",
        DEV_WECHATPAY_API_KEY,
        str,
        "WeChat Pay APIv2 key (32 characters, from the vault). The default only works with the sandbox.",
    ),
    Setting(
        "WECHATPAY_API_BASE",
        "",
        str,
        "WeChat Pay API base. Empty: `https://api.mch.weixin.qq.com/` (or the sandbox).",
    ),
    Setting("WECHATPAY_CERT_PATH", "", str, "Merchant API certificate (PEM) for refund and reverse."),
    Setting("WECHATPAY_KEY_PATH", "", str, "Merchant API certificate key (PEM)."),
    Setting("ALIPAY_APP_ID", "2021000000000001", str, "Alipay application id."),
    Setting(
        "ALIPAY_SELLER_ID",
        "2088000000000001",
        str,
        "Alipay seller (merchant) id, checked on every notification.",
    ),
    Setting(
        "ALIPAY_APP_PRIVATE_KEY_PATH",
        "",
        str,
        "Application private key (PEM). Empty: sandbox keys in `instance/`.",
    ),
    Setting(
        "ALIPAY_PUBLIC_KEY_PATH", "", str, "Alipay public key (PEM) that signs replies and notifications."
    ),
    Setting(
        "ALIPAY_GATEWAY",
        "",
        str,
        "Alipay gateway. Empty: `https://openapi.alipay.com/gateway.do` (or the sandbox).",
    ),
    Setting(
        "WECHAT_OAUTH_APPID",
        "",
        str,
        "Official-account AppID for the H5 cashier's web OAuth. Empty: `WECHATPAY_APPID`.",
    ),
    Setting(
        "WECHAT_OAUTH_SECRET", "", str, "Official-account AppSecret for web OAuth (the sandbox has its own)."
    ),
    Setting(
        "WECHAT_OAUTH_AUTHORIZE_URL",
        "",
        str,
        "Empty: `https://open.weixin.qq.com/connect/oauth2/authorize` (or the sandbox's OAuth emulator).",
    ),
    Setting("WECHAT_OAUTH_API_BASE", "", str, "Empty: `https://api.weixin.qq.com/` (or the sandbox)."),
    Setting(
        "ALIPAY_OAUTH_AUTHORIZE_URL",
        "",
        str,
        "Empty: `https://openauth.alipay.com/oauth2/publicAppAuthorize.htm` (or the sandbox).",
    ),
    Setting(
        "PAYMENT_PAYER_SESSION_MINUTES",
        30,
        int,
        "How long the H5 cashier remembers the payer's wallet identity.",
    ),
    Setting("PAYMENT_LINK_TTL_HOURS", 24, int, "Lifetime of a signed `/pay/o/...` bill link."),
    Setting(
        "PAYMENT_WALK_IN_MAX_FEN",
        100000,
        int,
        "Largest amount (fen) a payer may type in at an aggregate QR code without a bill.",
    ),
    Setting(
        "PAYMENT_POSTER_FONT",
        "",
        str,
        "CJK TrueType font for the printable aggregate-QR poster PNG. Empty: WenQuanYi Micro Hei if installed.",
    ),
    # --- family-doctor signing (issue 5) -----------------------------------------------------------
    Setting("CONTRACT_PERIOD_YEARS", 1, int, "Contract period in years: end = start + N years − 1 day."),
    Setting(
        "CONTRACT_REQUIRES_HEALTH_RECORD",
        False,
        bool,
        "Refuse signing a resident who has no health record yet (建档才可签约).",
    ),
    Setting(
        "CONTRACT_REVIEW_HOURS",
        48,
        int,
        "How long a team has to review an online application before it lapses (the resident is told).",
    ),
    Setting(
        "CONTRACT_CONFIRM_HOURS",
        72,
        int,
        "How long a resident has to confirm (and pay for) an accepted application before it lapses.",
    ),
    # --- public-health records (issue 6) -----------------------------------------------------------
    Setting(
        "SMD_FOLLOWUP_DAYS",
        "1:14,2:14,3:90",
        str,
        "严重精神障碍 next follow-up after a visit, in days, by 本次随访分类 (1 不稳定, 2 基本稳定, 3 稳定): the "
        "服务规范's 2 weeks / 2 weeks / 3 months; a district auditing against the 2018 工作规范 sets it here.",
    ),
    Setting(
        "MP_HIDDEN_HEALTH_CATEGORIES",
        "smd",
        str,
        "Health-record categories the mini-program does not show the resident (comma-separated: smd, tb); "
        "family members acting for a resident never see smd or tb (DATA-05).",
    ),
)

_TRUE = {"1", "true", "yes", "on"}


def _coerce(raw: str, kind: type) -> Any:
    if kind is bool:
        return raw.strip().lower() in _TRUE
    if kind is int:
        return int(raw)
    return raw


def load_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Settings from the environment, then explicit overrides (used by tests and CLI tools)."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = os.environ.get(setting.name)
        values[setting.name] = setting.default if raw is None or raw == "" else _coerce(raw, setting.kind)
    if overrides:
        values.update(overrides)
    if not values["DATABASE_URL"]:
        instance = ROOT / "instance"
        instance.mkdir(exist_ok=True)
        values["DATABASE_URL"] = f"sqlite:///{instance / 'luohu.db'}"
    values["IDEMPOTENCY_TTL_HOURS"] = max(24, int(values["IDEMPOTENCY_TTL_HOURS"]))
    return values


class ConfigurationError(RuntimeError):
    """The settings are unsafe or inconsistent; the service must not start."""


def check_production(values: Mapping[str, Any]) -> None:
    """Refuse a production start with development secrets or embedded backends."""
    if values.get("APP_ENV") != "production":
        return
    problems = [name for name, dev in _DEV_SECRETS.items() if values.get(name) == dev]
    if str(values.get("DATABASE_URL", "")).startswith("sqlite"):
        problems.append("DATABASE_URL (SQLite is for development only)")
    if not values.get("REDIS_URL"):
        problems.append("REDIS_URL (embedded fakeredis is for development only)")
    if values.get("PAYMENT_SANDBOX"):
        problems.append("PAYMENT_SANDBOX (the payment emulators are for development only)")
    if not str(values.get("PAYMENT_PUBLIC_BASE_URL", "")).startswith("https://"):
        problems.append("PAYMENT_PUBLIC_BASE_URL (must be https)")
    if problems:
        raise ConfigurationError("production mode refuses development settings: " + ", ".join(problems))


def is_production(values: Mapping[str, Any]) -> bool:
    return values.get("APP_ENV") == "production"
