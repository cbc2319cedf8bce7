"""page/size pagination with totals. `size` is capped at 100 (DATA-10): larger values are a 422."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

from marshmallow import Schema, fields, validate
from sqlalchemy import Select, func, select

from app.core.db import db

MAX_PAGE_SIZE = 100
T = TypeVar("T")


class PageArgsSchema(Schema):
    page = fields.Integer(
        load_default=1,
        validate=validate.Range(min=1, max=100_000),
        metadata={"description": "Page number, from 1"},
    )
    size = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Items per page, at most {MAX_PAGE_SIZE}"},
    )


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return (self.total + self.size - 1) // self.size if self.total else 0


def paginate(statement: Select[Any], page: int, size: int) -> Page[Any]:
    """Run `statement` for one page; the total counts the same filtered rows."""
    total = db.session.execute(
        select(func.count())
        .select_from(statement.order_by(None).subquery())
        .execution_options(**statement.get_execution_options())  # e.g. skip_centre_scope
    ).scalar_one()
    items = list(db.session.execute(statement.limit(size).offset((page - 1) * size)).scalars())
    return Page(items, page, size, total)


@cache
def page_schema(item_schema: type[Schema]) -> type[Schema]:
    """`{items: [...], page, size, total, pages}` around an item schema (one class per item type)."""
    name = item_schema.__name__.removesuffix("Schema") + "PageSchema"
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "page": fields.Integer(required=True),
            "size": fields.Integer(required=True),
            "total": fields.Integer(required=True, metadata={"description": "Matching items in all pages"}),
            "pages": fields.Integer(required=True),
        },
        name=name,
    )
