"""老年人生活自理能力评估表 (spec §5): scores by level, the total, the bands and their boundaries
(0–3 可自理, 4–8 轻度依赖, 9–18 中度依赖, ≥19 不能自理), 进餐/穿衣 without 轻度依赖, the print."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from flask import Flask

from app.accounts.models import StaffUser
from app.core.auth import Role
from app.core.db import commit
from app.health_records.forms import selfcare
from app.health_records.models import HealthRecord
from app.health_records.services import forms, records
from app.health_records.spec import FormInvalid
from tests.factories import as_principal, make_centre, make_staff, token_for
from tests.factories_residents import make_resident

# level codes: 1 可自理, 2 轻度依赖, 3 中度依赖, 4 不能自理
LEVEL = {"可自理": "1", "轻度": "2", "中度": "3", "不能自理": "4"}


def assessment(meal: str, grooming: str, dressing: str, toileting: str, activity: str) -> dict[str, str]:
    return {
        "assessed_at": "2026-02-01",
        "meal_level": LEVEL[meal],
        "grooming_level": LEVEL[grooming],
        "dressing_level": LEVEL[dressing],
        "toileting_level": LEVEL[toileting],
        "activity_level": LEVEL[activity],
    }


@pytest.fixture
def setup(app: Flask) -> tuple[StaffUser, HealthRecord]:
    centre = make_centre()
    doctor = make_staff(Role.DOCTOR, centre)
    resident = make_resident(centre, age=78)
    with as_principal(doctor):
        record = records.open_record(resident.id)
        commit()
    return doctor, record


def save(doctor: StaffUser, record: HealthRecord, payload: dict[str, str]) -> dict[str, Any]:
    with as_principal(doctor):
        form = forms.create_form(record.id, "elderly_selfcare", payload)
        commit()
        view = forms.view_form(form.id)
        commit()
    assert form.result_code == view.version.derived["selfcare_level"]
    return view.version.derived


def test_a_hand_scored_example(app: Flask, setup: tuple[StaffUser, HealthRecord]) -> None:
    doctor, record = setup
    derived = save(doctor, record, assessment("中度", "轻度", "可自理", "中度", "轻度"))
    # 进餐 中度 3 + 梳洗 轻度 1 + 穿衣 可自理 0 + 如厕 中度 5 + 活动 轻度 1 = 10 → 9–18 中度依赖
    assert (
        derived["meal_score"],
        derived["grooming_score"],
        derived["dressing_score"],
        derived["toileting_score"],
        derived["activity_score"],
    ) == (3, 1, 0, 5, 1)
    assert derived["total_score"] == 3 + 1 + 0 + 5 + 1 == 10
    assert (derived["selfcare_level"], derived["selfcare_label"]) == ("3", "中度依赖")


@pytest.mark.parametrize(
    ("levels", "total", "band", "label"),
    [
        # every item 可自理: 0 + 0 + 0 + 0 + 0 = 0
        (("可自理", "可自理", "可自理", "可自理", "可自理"), 0, "1", "可自理"),
        # 进餐 中度 3 = 3 (top of 可自理)
        (("中度", "可自理", "可自理", "可自理", "可自理"), 3, "1", "可自理"),
        # 进餐 中度 3 + 梳洗 轻度 1 = 4 (bottom of 轻度依赖)
        (("中度", "轻度", "可自理", "可自理", "可自理"), 4, "2", "轻度依赖"),
        # 进餐 中度 3 + 如厕 中度 5 = 8 (top of 轻度依赖)
        (("中度", "可自理", "可自理", "中度", "可自理"), 8, "2", "轻度依赖"),
        # 进餐 中度 3 + 如厕 中度 5 + 活动 轻度 1 = 9 (bottom of 中度依赖)
        (("中度", "可自理", "可自理", "中度", "轻度"), 9, "3", "中度依赖"),
        # 梳洗 不能自理 7 + 如厕 不能自理 10 + 活动 轻度 1 = 18 (top of 中度依赖)
        (("可自理", "不能自理", "可自理", "不能自理", "轻度"), 18, "3", "中度依赖"),
        # 进餐 不能自理 5 + 梳洗 轻度 1 + 穿衣 中度 3 + 如厕 不能自理 10 = 19 (bottom of 不能自理)
        (("不能自理", "轻度", "中度", "不能自理", "可自理"), 19, "4", "不能自理"),
        # everything 不能自理: 5 + 7 + 5 + 10 + 10 = 37 (the maximum)
        (("不能自理", "不能自理", "不能自理", "不能自理", "不能自理"), 37, "4", "不能自理"),
    ],
)
def test_band_boundaries(
    app: Flask,
    setup: tuple[StaffUser, HealthRecord],
    levels: tuple[str, ...],
    total: int,
    band: str,
    label: str,
) -> None:
    doctor, record = setup
    derived = save(doctor, record, assessment(*levels))
    assert derived["total_score"] == total
    assert (derived["selfcare_level"], derived["selfcare_label"]) == (band, label)


@pytest.mark.parametrize(
    ("total", "band"), [(0, "1"), (3, "1"), (4, "2"), (8, "2"), (9, "3"), (18, "3"), (19, "4"), (37, "4")]
)
def test_band_of(total: int, band: str) -> None:
    assert selfcare.band_of(total) == band


def test_meal_and_dressing_have_no_mild_level(app: Flask, setup: tuple[StaffUser, HealthRecord]) -> None:
    doctor, record = setup
    with as_principal(doctor), pytest.raises(FormInvalid) as caught:
        forms.create_form(record.id, "elderly_selfcare", assessment("轻度", "轻度", "轻度", "轻度", "轻度"))
    assert caught.value.errors == {
        "meal_level": "进餐：该项没有“轻度依赖”一档",
        "dressing_level": "穿衣：该项没有“轻度依赖”一档",
    }


def test_a_level_outside_the_list_and_a_missing_item_are_refused(
    app: Flask, setup: tuple[StaffUser, HealthRecord]
) -> None:
    doctor, record = setup
    payload = assessment("可自理", "可自理", "可自理", "可自理", "可自理")
    payload["activity_level"] = "5"
    del payload["toileting_level"]
    with as_principal(doctor), pytest.raises(FormInvalid) as caught:
        forms.create_form(record.id, "elderly_selfcare", payload)
    assert caught.value.errors == {
        "toileting_level": "如厕：必须填写",
        "activity_level": "活动：代码“5”不在可选范围内（1 可自理、2 轻度依赖、3 中度依赖、4 不能自理）",
    }


def pdftotext(data: bytes) -> str:
    """The text in drawing order (`-raw`: a table cell's lines stay together), whitespace removed."""
    text = subprocess.run(
        ["pdftotext", "-raw", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode("utf-8")
    return re.sub(r"\s+", "", text)


def test_the_print_shows_every_level_description_the_total_and_the_band(
    app: Flask, setup: tuple[StaffUser, HealthRecord]
) -> None:
    doctor, record = setup
    with as_principal(doctor):
        form = forms.create_form(
            record.id, "elderly_selfcare", assessment("中度", "轻度", "可自理", "中度", "轻度")
        )
        commit()
    response = app.test_client().get(
        f"/api/v1/health-forms/{form.id}/print.pdf", headers={"Authorization": f"Bearer {token_for(doctor)}"}
    )
    assert response.status_code == 200 and response.data[:4] == b"%PDF"
    text = pdftotext(response.data)
    assert "老年人生活自理能力评估表" in text
    assert record.short_no in text
    for item in selfcare.ITEMS:
        assert f"{item.title}：{item.content}" in text, item.title
        for description, points in item.levels.values():
            assert f"{description}评分{points}" in text, (item.title, description)
    # the 轻度依赖 cells of 梳洗, 如厕 and 活动 (omitted on some renderings) are printed in full
    for words in (
        "能独立地洗头、梳头、洗脸、刷牙、剃须等；洗澡需要协助评分1",
        "偶尔失禁，但基本上能如厕或使用便具评分1",
        "借助较小的外力或辅助装置能完成站立、行走、上下楼梯等评分1",
    ):
        assert words in text
    assert "装臵" not in text  # the OCR artefact of one source is not reproduced
    assert "—评分0" in text  # 进餐 and 穿衣 have no 轻度依赖 level
    # the total and its band
    assert "总评分" in text and "10（中度依赖）" in text
    assert "0～3分者为可自理；4～8分者为轻度依赖；9～18分者为中度依赖；≥19分者为不能自理" in text
