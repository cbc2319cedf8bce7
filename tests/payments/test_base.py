"""`payments.base`: payer-code routing, exact fen/yuan conversion, and no float on the money path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.base import Channel, channel_for_payer_code, fen_to_yuan, yuan_to_fen

ROOT = Path(__file__).resolve().parents[2]

# --- payer codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [str(p) for p in range(10, 16)])
def test_wechat_codes_are_18_digits_starting_10_to_15(prefix: str) -> None:
    assert channel_for_payer_code(prefix + "0" * 16) is Channel.WECHAT
    assert channel_for_payer_code(prefix + "9" * 16) is Channel.WECHAT


@pytest.mark.parametrize("prefix", [str(p) for p in range(25, 31)])
@pytest.mark.parametrize("length", [16, 18, 20, 24])
def test_alipay_codes_are_16_to_24_digits_starting_25_to_30(prefix: str, length: int) -> None:
    assert channel_for_payer_code(prefix + "7" * (length - 2)) is Channel.ALIPAY


@pytest.mark.parametrize(
    "code",
    [
        "",
        "09" + "1" * 16,  # below the WeChat range
        "16" + "1" * 16,  # between the ranges
        "24" + "1" * 16,
        "31" + "1" * 16,  # above the Alipay range
        "13" + "1" * 15,  # WeChat, 17 digits
        "13" + "1" * 17,  # WeChat, 19 digits
        "28" + "1" * 13,  # Alipay, 15 digits
        "28" + "1" * 23,  # Alipay, 25 digits
        "13" + "1" * 15 + "a",
        "13 " + "1" * 15,
        "１３" + "1" * 16,  # full-width digits
        "13" + "1" * 16 + "\n",
    ],
)
def test_other_codes_are_not_routed(code: str) -> None:
    assert channel_for_payer_code(code) is None


@given(st.integers(min_value=10, max_value=15), st.text("0123456789", min_size=16, max_size=16))
def test_any_wechat_shaped_code_routes_to_wechat(prefix: int, rest: str) -> None:
    assert channel_for_payer_code(f"{prefix}{rest}") is Channel.WECHAT


@given(st.integers(min_value=25, max_value=30), st.text("0123456789", min_size=14, max_size=22))
def test_any_alipay_shaped_code_routes_to_alipay(prefix: int, rest: str) -> None:
    assert channel_for_payer_code(f"{prefix}{rest}") is Channel.ALIPAY


# --- fen / yuan ------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**9))
def test_fen_yuan_round_trip(amount_fen: int) -> None:
    text = fen_to_yuan(amount_fen)
    assert yuan_to_fen(text) == amount_fen
    whole, cents = text.split(".")
    assert len(cents) == 2
    assert int(whole) * 100 + int(cents) == amount_fen


@pytest.mark.parametrize(
    ("text", "fen"),
    [("0.10", 10), ("12.3", 1230), ("12.30", 1230), ("0", 0), ("0.01", 1), ("1", 100), ("99999.99", 9999999)],
)
def test_yuan_to_fen_exact(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize(
    ("fen", "text"), [(0, "0.00"), (1, "0.01"), (10, "0.10"), (1230, "12.30"), (10**9, "10000000.00")]
)
def test_fen_to_yuan_exact(fen: int, text: str) -> None:
    assert fen_to_yuan(fen) == text


@pytest.mark.parametrize(
    "text",
    [
        "0.105",
        "-1",
        "1e2",
        " 1",
        "1 ",
        "01.00",
        "00",
        ".5",
        "1.",
        "+1",
        "1,00",
        "１",
        "NaN",
        "inf",
        "",
        "1.2.3",
    ],
)
def test_yuan_to_fen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        yuan_to_fen(text)


@pytest.mark.parametrize("value", [-1, True, "100", None, 10**0 / 1])
def test_fen_to_yuan_rejects_non_fen(value: object) -> None:
    with pytest.raises(ValueError):
        fen_to_yuan(value)  # type: ignore[arg-type]


def test_yuan_to_fen_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        yuan_to_fen(12)  # type: ignore[arg-type]


# --- no float on the money path -----------------------------------------------------------------

NO_FLOAT_PRAGMA = "# float-ok"  # a line carrying it (with a reason) is exempt: durations, never money


def money_path_files() -> list[Path]:
    files = sorted((ROOT / "payments").glob("*.py")) + sorted((ROOT / "payments" / "sandbox").glob("*.py"))
    billing = ROOT / "app" / "billing"
    if billing.exists():
        files += sorted(billing.rglob("*.py"))
    return files


def float_uses(source: str) -> list[tuple[int, str]]:
    """(line number, line) of every `float(...)` call and float/complex literal not marked float-ok."""
    lines = source.splitlines()
    hits = set()
    for node in ast.walk(ast.parse(source)):
        is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
        is_literal = isinstance(node, ast.Constant) and isinstance(node.value, float | complex)
        if is_call or is_literal:
            line = lines[node.lineno - 1]  # type: ignore[attr-defined]
            if NO_FLOAT_PRAGMA not in line:
                hits.add((node.lineno, line.strip()))  # type: ignore[attr-defined]
    return sorted(hits)


def test_money_path_covers_the_payment_modules() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in money_path_files()}
    assert {"payments/base.py", "payments/fake.py", "payments/sandbox/ledger.py"} <= names


def test_no_float_on_the_money_path() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line}"
        for path in money_path_files()
        for number, line in float_uses(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "float( or a float literal on the money path:\n" + "\n".join(offenders)


def test_float_detector_finds_calls_and_literals() -> None:
    source = "a = float('1')\nb = 0.5\nc = 1\nd = 2.5  # float-ok: seconds\ne = 1j\nf = int('2')\n"
    assert float_uses(source) == [(1, "a = float('1')"), (2, "b = 0.5"), (5, "e = 1j")]
