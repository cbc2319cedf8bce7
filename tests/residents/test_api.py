"""HTTP tests of `/api/v1/residents` and `/api/v1/households`: success, 401, 403, 422 with Chinese
field messages, 409, cross-centre 404 with a denied audit row, masking, audit of every read.

Every response of this module is checked for ID and phone numbers in clear by the autouse fixture
of `conftest.py` (the unmask endpoint excepted)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from app.accounts.models import StaffUser
from app.core.audit import AuditEvent
from app.core.db import db
from app.institutions.models import Institution
from app.residents.models import Resident, ResidentChange
from tests.audit.support import audit_rows, idem
from tests.factories import grant
from tests.factories_residents import make_consent, make_household, make_resident, random_id_number
from tests.residents.conftest import ResidentsHttp

R = "/api/v1/residents"
H = "/api/v1/households"
AsHttp = Callable[[StaffUser | None], ResidentsHttp]


def _body(centre: Institution, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "张三丰",
        "id_number": random_id_number(date(1960, 5, 17), "male"),
        "current_address": "深圳市罗湖区桂园街道老围社区1栋101",
        "community_id": str(centre.community_id),
        "phone": "13812345678",
        "population_groups": ["hypertension"],
    }
    values.update(overrides)
    return values


def _count(model: type = Resident) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


# --- create ---------------------------------------------------------------------------------


def test_create_is_201_masked_and_replayable(as_http: AsHttp, nurse: StaffUser, centre: Institution) -> None:
    http = as_http(nurse)
    payload, key = _body(centre), idem()
    created = http.post(R, json=payload, headers=key)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["name"] == "张**" and body["sex"] == "male" and body["birth_date"] == "1960-05-17"
    assert body["id_number"] == "*" * 14 + payload["id_number"][-4:]
    assert body["phone"] == "138****5678"
    assert body["current_address"].startswith("深圳市罗湖区") and "101" not in body["current_address"]
    assert body["institution"]["id"] == str(centre.id) and body["status_label"] == "在册"
    expected = {"hypertension"} | ({"elderly_65"} if body["age"] >= 65 else set())
    assert {g["code"] for g in body["population_groups"]} == expected
    replay = http.post(R, json=payload, headers=key)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json["id"] == body["id"] and _count() == 1
    assert [e.action for e in audit_rows(subject_resident_id=body["id"])] == ["create"]


def test_create_needs_an_idempotency_key(as_http: AsHttp, nurse: StaffUser, centre: Institution) -> None:
    response = as_http(nurse).post(R, json=_body(centre))
    assert response.status_code == 400 and response.json["code"] == "idempotency_key_required"


def test_create_401_and_403(
    as_http: AsHttp, cashier: StaffUser, auditor: StaffUser, centre: Institution
) -> None:
    assert as_http(None).post(R, json=_body(centre), headers=idem()).status_code == 401
    for user in (cashier, auditor):
        response = as_http(user).post(R, json=_body(centre), headers=idem())
        assert response.status_code == 403 and response.json["code"] == "permission_denied"
    assert _count() == 0


def test_create_422_messages_are_chinese_and_per_field(
    as_http: AsHttp, nurse: StaffUser, centre: Institution
) -> None:
    http = as_http(nurse)
    good = random_id_number()
    bad = good[:-1] + ("1" if good[-1] != "1" else "2")
    response = http.post(R, json=_body(centre, id_number=bad), headers=idem())
    assert response.status_code == 422
    assert response.json["errors"]["id_number"] == ["身份证号码校验位不正确，请核对后重新输入"]
    assert "校验位" in response.json["message"]
    missing = http.post(R, json={"id_number": good}, headers=idem())
    assert missing.status_code == 422
    assert missing.json["errors"]["name"] == ["此项必填"]
    assert missing.json["errors"]["current_address"] == ["此项必填"]
    for extra in ({"status": "deceased"}, {"name_initials": "abc"}, {"id": str(uuid.uuid4())}):
        response = http.post(R, json=_body(centre, **extra), headers=idem())
        assert response.status_code == 422 and response.json["errors"] == {
            next(iter(extra)): ["不允许的字段"]
        }
    derived = http.post(R, json=_body(centre, population_groups=["elderly_65"]), headers=idem())
    assert derived.status_code == 422
    assert derived.json["errors"]["population_groups"] == {
        "0": ["“65岁及以上老年人”由出生日期自动判定，无需填写"]
    }
    phone = http.post(R, json=_body(centre, phone="12345"), headers=idem())
    assert phone.json["errors"]["phone"] == ["手机号格式不正确，应为 11 位手机号"]
    blank = http.post(R, json=_body(centre, name="   ", current_address="  \t "), headers=idem())
    assert blank.status_code == 422
    assert blank.json["errors"]["name"] == ["姓名不能包含数字或特殊符号"]
    assert blank.json["errors"]["current_address"] == ["不能为空白，也不能包含控制字符"]
    # NUL characters are refused by the global guard (app/core/http.py) before the schema runs.
    nul_body = http.post(R, json=_body(centre, current_address="路\x00"), headers=idem())
    assert nul_body.status_code == 422 and nul_body.json["errors"] == {"current_address": ["不能包含空字符"]}
    nul = http.get(R, query_string={"name": "张\x00"})
    assert nul.status_code == 422 and nul.json["errors"] == {"query.name": ["不能包含空字符"]}
    child = http.post(R, json=_body(centre, id_number=random_id_number(date(2018, 1, 1))), headers=idem())
    assert child.status_code == 422 and child.json["code"] == "guardian_required"
    assert _count() == 0


def test_create_for_another_centre_is_403(
    as_http: AsHttp, nurse: StaffUser, centre: Institution, other_centre: Institution
) -> None:
    response = as_http(nurse).post(R, json=_body(centre, institution_id=str(other_centre.id)), headers=idem())
    assert response.status_code == 403 and response.json["code"] == "outside_scope"


def test_a_duplicate_is_409_and_changes_nothing(
    as_http: AsHttp, nurse: StaffUser, centre: Institution, other_centre: Institution
) -> None:
    existing = make_resident(other_centre, name="李四娘", phone="13900001111")
    before = (_count(), _count(ResidentChange))
    response = as_http(nurse).post(R, json=_body(centre, id_number=existing.id_number), headers=idem())
    assert response.status_code == 409
    assert response.json["code"] == "resident_exists"
    assert other_centre.name in response.json["message"]
    text = response.get_data(as_text=True)
    assert "李四娘" not in text and str(existing.id) not in text and "13900001111" not in text
    assert (_count(), _count(ResidentChange)) == before
    denied = audit_rows(subject_resident_id=existing.id)
    assert [(e.action, e.result, e.purpose) for e in denied] == [("create", "denied", "duplicate_id_number")]


# --- read -----------------------------------------------------------------------------------


def test_get_is_masked_and_audited_once(as_http: AsHttp, nurse: StaffUser, resident: Resident) -> None:
    response = as_http(nurse).get(f"{R}/{resident.id}")
    assert response.status_code == 200
    assert response.json["name"] == "张**" and response.json["phone"] == "138****1234"
    assert "张三丰" not in response.get_data(as_text=True)
    rows = audit_rows(subject_resident_id=resident.id)
    assert [(e.action, e.object_type, e.result, e.actor_id) for e in rows] == [
        ("read", "resident", "allowed", str(nurse.id))
    ]
    assert rows[0].institution_id == str(nurse.institution_id) and rows[0].request_id


def test_get_shows_health_groups_by_role_and_special_groups_by_category_permission(
    as_http: AsHttp,
    nurse: StaffUser,
    doctor: StaffUser,
    cashier: StaffUser,
    auditor: StaffUser,
    centre: Institution,
) -> None:
    resident = make_resident(centre, age=40, population_groups={"tuberculosis", "diabetes_t2"})
    path = f"{R}/{resident.id}"
    for user in (nurse, doctor):
        assert [g["label"] for g in as_http(user).get(path).json["population_groups"]] == ["2型糖尿病"]
    grant(doctor, "health:tb")
    assert [g["code"] for g in as_http(doctor).get(path).json["population_groups"]] == [
        "diabetes_t2",
        "tuberculosis",
    ]
    grant(nurse, "health:smd")  # another category's permission shows nothing more
    assert [g["label"] for g in as_http(nurse).get(path).json["population_groups"]] == ["2型糖尿病"]
    for user in (cashier, auditor):
        response = as_http(user).get(path)
        assert response.status_code == 200 and response.json["population_groups"] is None


def test_get_401_and_cross_centre_404_with_a_denied_audit_row(
    as_http: AsHttp, other_doctor: StaffUser, district_admin: StaffUser, resident: Resident
) -> None:
    assert as_http(None).get(f"{R}/{resident.id}").status_code == 401
    response = as_http(other_doctor).get(f"{R}/{resident.id}")
    assert response.status_code == 404 and response.json["code"] == "not_found"
    assert response.json == as_http(other_doctor).get(f"{R}/{uuid.uuid4()}").json
    denied = audit_rows(object_id=resident.id, result="denied")
    assert [(e.action, e.actor_id, e.purpose) for e in denied] == [
        ("read", str(other_doctor.id), "cross_centre_access")
    ]
    assert as_http(district_admin).get(f"{R}/{resident.id}").status_code == 200


# --- update ---------------------------------------------------------------------------------


def test_update_writes_history(as_http: AsHttp, nurse: StaffUser, resident: Resident) -> None:
    response = as_http(nurse).patch(
        f"{R}/{resident.id}", json={"phone": "+86 139 0000 2222", "reason": "换号"}
    )
    assert response.status_code == 200 and response.json["phone"] == "139****2222"
    change = db.session.execute(select(ResidentChange).where(ResidentChange.action == "updated")).scalar_one()
    assert (change.fields, change.reason) == (["phone"], "换号")
    assert [e.action for e in audit_rows(subject_resident_id=resident.id)] == ["update"]


@pytest.mark.parametrize(
    "field",
    [
        {"status": "deceased"},
        {"institution_id": str(uuid.uuid4())},
        {"name_initials": "x"},
        {"id_number_bidx": "x"},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"guardian_id": str(uuid.uuid4())},
    ],
)
def test_server_owned_fields_cannot_be_patched(
    as_http: AsHttp, nurse: StaffUser, resident: Resident, field: dict[str, str]
) -> None:
    before = (resident.status, resident.institution_id, resident.name_initials)
    response = as_http(nurse).patch(f"{R}/{resident.id}", json=field)
    assert response.status_code == 422 and response.json["errors"] == {next(iter(field)): ["不允许的字段"]}
    db.session.refresh(resident)
    assert (resident.status, resident.institution_id, resident.name_initials) == before


def test_update_422_403_409_404(
    as_http: AsHttp,
    nurse: StaffUser,
    cashier: StaffUser,
    other_doctor: StaffUser,
    resident: Resident,
    centre: Institution,
) -> None:
    http = as_http(nurse)
    path = f"{R}/{resident.id}"
    empty = http.patch(path, json={})
    assert empty.status_code == 422 and empty.json["errors"] == {"_schema": ["请至少修改一项信息"]}
    assert http.patch(path, json={"sex": "female"}).json["errors"] == {
        "sex": ["性别与证件号码不一致（证件号码显示为男）"]
    }
    assert as_http(cashier).patch(path, json={"name": "李四"}).status_code == 403
    other = make_resident(centre)
    conflict = http.patch(path, json={"id_number": other.id_number})
    assert conflict.status_code == 409 and conflict.json["code"] == "resident_exists"
    assert as_http(other_doctor).patch(path, json={"name": "李四"}).status_code == 404
    assert as_http(None).patch(path, json={"name": "李四"}).status_code == 401


# --- search ---------------------------------------------------------------------------------


def test_search_is_masked_without_health_data_and_audited(
    as_http: AsHttp,
    nurse: StaffUser,
    cashier: StaffUser,
    auditor: StaffUser,
    resident: Resident,
    centre: Institution,
) -> None:
    make_resident(centre, name="李四")
    http = as_http(nurse)
    found = http.get(R, query_string={"q": resident.id_number})
    assert found.status_code == 200 and found.json["total"] == 1
    item = found.json["items"][0]
    assert (
        item["id"] == str(resident.id)
        and item["name"] == "张**"
        and item["id_number"].endswith(resident.id_number[-4:])
    )
    assert "population_groups" not in item and "current_address" not in item
    assert [i["id"] for i in http.get(R, query_string={"q": "zsf"}).json["items"]] == [str(resident.id)]
    assert [i["id"] for i in http.get(R, query_string={"phone": "13812341234"}).json["items"]] == [
        str(resident.id)
    ]
    searches = [e for e in audit_rows(action="search") if e.object_type == "resident"]
    assert len(searches) == 3 and searches[0].detail["resident_ids"] == [str(resident.id)]
    for user in (cashier, auditor):
        assert as_http(user).get(R, query_string={"name": "张"}).status_code == 200
    too_big = http.get(R, query_string={"size": 101})
    assert too_big.status_code == 422 and "query.size" in too_big.json["errors"]
    assert http.get(R, query_string={"status": "gone"}).status_code == 422
    assert as_http(None).get(R).status_code == 401


# --- status, transfer, history --------------------------------------------------------------


def test_status_endpoint(as_http: AsHttp, nurse: StaffUser, cashier: StaffUser, resident: Resident) -> None:
    path = f"{R}/{resident.id}/status"
    deceased = as_http(nurse).post(
        path, json={"status": "deceased", "effective_date": "2024-12-01", "reason": "病故"}
    )
    assert deceased.status_code == 200 and deceased.json["status_label"] == "死亡"
    assert deceased.json["status_date"] == "2024-12-01"
    again = as_http(nurse).post(path, json={"status": "active", "effective_date": "2025-01-01"})
    assert again.status_code == 409 and again.json["code"] == "invalid_status_transition"
    missing = as_http(nurse).post(path, json={"status": "moved_out"})
    assert missing.status_code == 422 and missing.json["errors"] == {"effective_date": ["此项必填"]}
    assert (
        as_http(cashier).post(path, json={"status": "moved_out", "effective_date": "2024-01-01"}).status_code
        == 403
    )


def test_transfer_endpoint(
    as_http: AsHttp,
    admin: StaffUser,
    nurse: StaffUser,
    other_admin: StaffUser,
    auditor: StaffUser,
    resident: Resident,
    centre: Institution,
    other_centre: Institution,
) -> None:
    path = f"{R}/{resident.id}/transfer"
    payload = {"to_institution_id": str(other_centre.id), "reason": "居住地变更"}
    assert as_http(nurse).post(path, json=payload).status_code == 403
    assert as_http(None).post(path, json=payload).status_code == 401
    assert as_http(admin).post(path, json={"to_institution_id": str(other_centre.id)}).json["errors"] == {
        "reason": ["此项必填"]
    }
    same = as_http(admin).post(path, json={"to_institution_id": str(centre.id), "reason": "无变化"})
    assert same.status_code == 409 and same.json["code"] == "same_institution"
    assert (
        as_http(other_admin).post(path, json={**payload, "to_institution_id": str(centre.id)}).status_code
        == 404
    )
    moved = as_http(admin).post(path, json=payload)
    assert moved.status_code == 200
    assert moved.json["from_institution"]["name"] == centre.name
    assert moved.json["to_institution"]["name"] == other_centre.name
    assert as_http(nurse).get(f"{R}/{resident.id}").status_code == 404
    history = as_http(other_admin).get(f"{R}/{resident.id}/transfers")
    assert history.status_code == 200 and [t["id"] for t in history.json] == [moved.json["id"]]
    changes = as_http(other_admin).get(f"{R}/{resident.id}/changes").json["items"]
    assert changes[0]["action"] == "transferred" and changes[0]["action_label"] == "管理机构变更"
    assert (
        as_http(auditor).get(f"{R}/{resident.id}/transfers").status_code == 404
    )  # auditor of the old centre


def test_history_endpoints_roles(
    as_http: AsHttp, auditor: StaffUser, cashier: StaffUser, resident: Resident
) -> None:
    for suffix in ("changes", "transfers", "consents"):
        assert as_http(auditor).get(f"{R}/{resident.id}/{suffix}").status_code == 200
        assert as_http(cashier).get(f"{R}/{resident.id}/{suffix}").status_code == 403
    assert as_http(auditor).get(f"{R}/{resident.id}/changes", query_string={"size": 0}).status_code == 422


# --- guardian -------------------------------------------------------------------------------


def test_guardian_endpoints(
    as_http: AsHttp, nurse: StaffUser, cashier: StaffUser, centre: Institution
) -> None:
    mother, father = make_resident(centre, age=35, name="王芳"), make_resident(centre, age=36)
    child = make_resident(centre, age=8, guardian=mother)
    path = f"{R}/{child.id}/guardian"
    changed = as_http(nurse).put(path, json={"guardian_id": str(father.id), "relationship": "father"})
    assert changed.status_code == 200
    assert (
        changed.json["guardian"]["id"] == str(father.id) and changed.json["guardian_relationship"] == "father"
    )
    bad = as_http(nurse).put(path, json={"guardian_id": str(father.id), "relationship": "uncle"})
    assert bad.status_code == 422 and "relationship" in bad.json["errors"]
    removed = as_http(nurse).delete(path)
    assert removed.status_code == 409 and removed.json["code"] == "guardian_required"
    assert (
        as_http(cashier).put(path, json={"guardian_id": str(father.id), "relationship": "father"}).status_code
        == 403
    )


# --- consents -------------------------------------------------------------------------------


def test_consent_endpoints(as_http: AsHttp, nurse: StaffUser, cashier: StaffUser, resident: Resident) -> None:
    path = f"{R}/{resident.id}/consents"
    grant = {
        "purpose": "regional_platform_sharing",
        "text_version": "1",
        "granted_by": "self",
        "channel": "desk",
    }
    created = as_http(nurse).post(path, json=grant)
    assert created.status_code == 201
    assert created.json["state"] == "active" and created.json["purpose_label"] == "区域平台数据共享"
    assert created.json["legal_basis_label"].startswith("单独同意")
    assert as_http(nurse).post(path, json=grant).status_code == 409
    statutory = as_http(nurse).post(path, json={**grant, "purpose": "basic_public_health"})
    assert statutory.status_code == 422 and "purpose" in statutory.json["errors"]
    assert as_http(nurse).post(path, json={**grant, "channel": "miniprogram"}).status_code == 422
    assert as_http(cashier).post(path, json=grant).status_code == 403
    revoke = f"{path}/{created.json['id']}/revoke"
    revoked = as_http(nurse).post(
        revoke, json={"revoked_by": "self", "channel": "desk", "reason": "不再共享"}
    )
    assert revoked.status_code == 200 and revoked.json["state"] == "revoked"
    assert as_http(nurse).post(revoke, json={"revoked_by": "self", "channel": "desk"}).status_code == 409
    assert (
        as_http(nurse)
        .post(f"{path}/{uuid.uuid4()}/revoke", json={"revoked_by": "self", "channel": "desk"})
        .status_code
        == 404
    )
    listed = as_http(nurse).get(path)
    assert [c["state"] for c in listed.json] == ["revoked"]
    assert [e.action for e in audit_rows(subject_resident_id=resident.id)][-1] == "read"


def test_consents_of_another_centre_are_404(
    as_http: AsHttp, other_doctor: StaffUser, resident: Resident
) -> None:
    consent = make_consent(resident)
    response = as_http(other_doctor).post(
        f"{R}/{resident.id}/consents/{consent.id}/revoke", json={"revoked_by": "self", "channel": "desk"}
    )
    assert response.status_code == 404
    assert audit_rows(object_id=resident.id, result="denied")


# --- unmask ---------------------------------------------------------------------------------


def test_unmask_needs_the_permission_and_a_reason_and_is_audited(
    as_http: AsHttp,
    nurse: StaffUser,
    admin: StaffUser,
    cashier: StaffUser,
    other_admin: StaffUser,
    resident: Resident,
) -> None:
    path = f"{R}/{resident.id}/unmask"
    refused = as_http(nurse).post(path, json={"field": "id_number", "reason": "verify_identity"})
    assert refused.status_code == 403 and refused.json["code"] == "unmask_not_permitted"
    assert [(e.action, e.result) for e in audit_rows(action="unmask")] == [("unmask", "denied")]
    assert (
        as_http(cashier).post(path, json={"field": "phone", "reason": "contact_resident"}).status_code == 403
    )
    no_note = as_http(admin).post(path, json={"field": "phone", "reason": "other"})
    assert no_note.status_code == 422 and no_note.json["errors"] == {"note": ["请填写查看原因"]}
    assert as_http(admin).post(path, json={"field": "birth_date", "reason": "other"}).status_code == 422
    assert as_http(admin).post(path, json={"field": "phone"}).json["errors"] == {"reason": ["此项必填"]}
    assert (
        as_http(other_admin).post(path, json={"field": "name", "reason": "verify_identity"}).status_code
        == 404
    )
    for field, value in (("id_number", resident.id_number), ("name", "张三丰"), ("phone", "13812341234")):
        shown = as_http(admin).post(path, json={"field": field, "reason": "verify_identity"})
        assert shown.status_code == 200 and shown.json == {"field": field, "value": value}
    allowed = [
        e for e in audit_rows(action="unmask", subject_resident_id=resident.id) if e.result == "allowed"
    ]
    assert [(e.detail["field"], e.purpose) for e in allowed] == [
        ("id_number", "verify_identity:"),
        ("name", "verify_identity:"),
        ("phone", "verify_identity:"),
    ]


# --- households -----------------------------------------------------------------------------


def test_household_endpoints(
    as_http: AsHttp, nurse: StaffUser, auditor: StaffUser, cashier: StaffUser, centre: Institution
) -> None:
    head, spouse, child = (
        make_resident(centre, age=40),
        make_resident(centre, age=39),
        make_resident(centre, age=12),
    )
    http = as_http(nurse)
    created = http.post(
        H,
        json={
            "head_id": str(head.id),
            "members": [{"resident_id": str(spouse.id), "relationship": "spouse"}],
        },
    )
    assert created.status_code == 201 and created.json["head_id"] == str(head.id)
    household = f"{H}/{created.json['id']}"
    assert all(m["name"].endswith("*") for m in created.json["members"])
    added = http.post(f"{household}/members", json={"resident_id": str(child.id), "relationship": "child"})
    assert added.status_code == 201 and len(added.json["members"]) == 3
    again = http.post(f"{household}/members", json={"resident_id": str(child.id), "relationship": "child"})
    assert again.status_code == 409 and again.json["code"] == "already_in_household"
    bad = http.post(f"{household}/members", json={"resident_id": str(child.id), "relationship": "head"})
    assert bad.status_code == 422
    assert (
        http.patch(f"{household}/members/{child.id}", json={"relationship": "grandchild"}).status_code == 200
    )
    listed = as_http(auditor).get(H, query_string={"resident_id": str(child.id)})
    assert [h["id"] for h in listed.json["items"]] == [created.json["id"]]
    assert as_http(auditor).get(household).status_code == 200
    assert as_http(cashier).get(household).status_code == 403
    assert as_http(None).get(household).status_code == 401
    head_change = http.put(
        f"{household}/head",
        json={
            "head_id": str(spouse.id),
            "relationships": [
                {"resident_id": str(head.id), "relationship": "spouse"},
                {"resident_id": str(child.id), "relationship": "child"},
            ],
        },
    )
    assert head_change.status_code == 200 and head_change.json["head_id"] == str(spouse.id)
    assert http.delete(f"{household}/members/{child.id}").status_code == 200
    assert http.delete(f"{household}/members/{child.id}").status_code == 404
    member = as_http(nurse).get(f"{R}/{spouse.id}").json["household"]
    assert member == {
        "household_id": created.json["id"],
        "relationship": "head",
        "relationship_label": "户主",
    }
    assert http.delete(household).status_code == 204
    assert http.get(household).status_code == 404


def test_households_of_another_centre_are_404(
    as_http: AsHttp, other_doctor: StaffUser, centre: Institution
) -> None:
    household = make_household(make_resident(centre, age=40))
    response = as_http(other_doctor).get(f"{H}/{household.id}")
    assert response.status_code == 404
    assert [(e.object_type, e.result) for e in audit_rows(object_id=household.id)] == [
        ("household", "denied")
    ]
    assert as_http(other_doctor).delete(f"{H}/{household.id}").status_code == 404


def test_code_lists(as_http: AsHttp, cashier: StaffUser) -> None:
    codes = as_http(cashier).get(f"{R}/codes")
    assert codes.status_code == 200
    assert {"code": "resident_id_card", "label": "居民身份证"} in codes.json["id_types"]
    groups = {g["code"]: g for g in codes.json["population_groups"]}
    assert groups["elderly_65"]["derived"] and groups["tuberculosis"]["special"]
    purposes = {p["code"]: p for p in codes.json["consent_purposes"]}
    assert purposes["online_services"]["current_version"] == "1"
    assert purposes["basic_public_health"]["legal_basis"] == "statutory_duty"


# --- the story of the issue -----------------------------------------------------------------


def test_a_desk_nurse_registers_and_finds_a_resident_a_doctor_elsewhere_cannot(
    as_http: AsHttp, nurse: StaffUser, other_doctor: StaffUser, centre: Institution
) -> None:
    number = random_id_number(date(1948, 3, 9), "female")
    created = as_http(nurse).post(
        R, json=_body(centre, name="欧阳娜娜", id_number=number, population_groups=[]), headers=idem()
    )
    assert created.status_code == 201 and created.json["age"] >= 65
    assert [g["code"] for g in created.json["population_groups"]] == ["elderly_65"]
    found = as_http(nurse).get(R, query_string={"q": number.lower()})
    assert found.json["total"] == 1
    item = found.json["items"][0]
    assert item["name"] == "欧***" and item["id_number"] == "*" * 14 + number[-4:]
    assert as_http(nurse).get(R, query_string={"q": "oynn"}).json["total"] == 1
    assert as_http(other_doctor).get(R, query_string={"q": number}).json["total"] == 0
    assert as_http(other_doctor).get(f"{R}/{item['id']}").status_code == 404
    assert (
        db.session.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.result == "denied")
        ).scalar_one()
        == 1
    )
