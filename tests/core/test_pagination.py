"""page/size pagination with totals (app/core/pagination.py; DATA-10)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.accounts.models import StaffUser
from app.core.auth import Role
from app.core.pagination import MAX_PAGE_SIZE, Page, PageArgsSchema, paginate
from app.institutions.models import Institution
from tests.factories import make_centre, make_staff, token_for


def _get(app: Flask, token: str, **query: Any) -> Any:
    with app.app_context():
        return app.test_client().get(
            "/api/v1/staff", query_string=query, headers={"Authorization": f"Bearer {token}"}
        )


@pytest.fixture
def seven_in_a_centre() -> tuple[str, list[StaffUser]]:
    centre = make_centre()
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    staff = [admin] + [make_staff(Role.DOCTOR, centre) for _ in range(6)]
    other = make_centre()
    for _ in range(3):
        make_staff(Role.NURSE, other)  # another centre: never counted for this admin
    return token_for(admin), staff


@pytest.mark.parametrize("size", [MAX_PAGE_SIZE + 1, 100_000])
def test_size_over_the_cap_is_422(
    app: Flask, seven_in_a_centre: tuple[str, list[StaffUser]], size: int
) -> None:
    response = _get(app, seven_in_a_centre[0], size=size)
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert list(response.json["errors"]) == ["query.size"]
    assert "100" in response.json["errors"]["query.size"][0]


@pytest.mark.parametrize("query", [{"size": 0}, {"page": 0}, {"page": -1}, {"page": "x"}])
def test_out_of_range_pages_are_422(
    app: Flask, seven_in_a_centre: tuple[str, list[StaffUser]], query: dict[str, Any]
) -> None:
    assert _get(app, seven_in_a_centre[0], **query).status_code == 422


def test_totals_and_pages(app: Flask, seven_in_a_centre: tuple[str, list[StaffUser]]) -> None:
    token, staff = seven_in_a_centre
    pages = [_get(app, token, size=3, page=n).json for n in (1, 2, 3, 4)]
    for number, page in enumerate(pages, start=1):
        assert (page["page"], page["size"], page["total"], page["pages"]) == (number, 3, 7, 3)
    assert [len(p["items"]) for p in pages] == [3, 3, 1, 0]
    seen = [item["id"] for p in pages for item in p["items"]]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == {str(u.id) for u in staff}

    everything = _get(app, token, size=MAX_PAGE_SIZE).json
    assert (everything["total"], everything["pages"], len(everything["items"])) == (7, 1, 7)
    default = _get(app, token).json
    assert (default["page"], default["size"]) == (1, 20)


def test_totals_count_the_filtered_rows(app: Flask, seven_in_a_centre: tuple[str, list[StaffUser]]) -> None:
    page = _get(app, seven_in_a_centre[0], role="doctor", size=4).json
    assert (page["total"], page["pages"], len(page["items"])) == (6, 2, 4)
    none = _get(app, seven_in_a_centre[0], role="cashier").json
    assert (none["total"], none["pages"], none["items"]) == (0, 0, [])


def test_paginate_directly() -> None:
    names = sorted(make_centre().name for _ in range(5))
    statement = select(Institution).where(Institution.name.in_(names)).order_by(Institution.name)
    page = paginate(statement, page=2, size=2)
    assert isinstance(page, Page)
    assert [c.name for c in page.items] == names[2:4]
    assert (page.total, page.pages) == (5, 3)
    assert paginate(statement, page=3, size=2).items[0].name == names[4]
    assert Page([], 1, 20, 0).pages == 0
    assert Page([], 1, 20, 20).pages == 1
    assert Page([], 1, 20, 21).pages == 2


def test_page_args_schema_limits() -> None:
    schema = PageArgsSchema()
    assert schema.load({}) == {"page": 1, "size": 20}
    assert schema.load({"size": MAX_PAGE_SIZE}) == {"page": 1, "size": MAX_PAGE_SIZE}
    assert "size" in schema.validate({"size": MAX_PAGE_SIZE + 1})
