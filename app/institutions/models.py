"""District -> street (街道) -> community (社区) -> centre (社康中心)."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, Timestamps, UUIDPrimaryKey

DISTRICT_CODE = "440303"  # 罗湖区 administrative division code
DISTRICT_NAME = "罗湖区"

# Luohu's ten streets (街道) with their division codes (the 3 digits after 440303).
STREETS: tuple[tuple[str, str], ...] = (
    ("001", "桂园"),
    ("002", "黄贝"),
    ("003", "东门"),
    ("004", "翠竹"),
    ("005", "南湖"),
    ("006", "笋岗"),
    ("007", "东湖"),
    ("008", "莲塘"),
    ("009", "东晓"),
    ("010", "清水河"),
)


class Street(UUIDPrimaryKey, Base):
    """街道."""

    __tablename__ = "streets"

    code: Mapped[str] = mapped_column(String(3), unique=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)

    communities: Mapped[list[Community]] = relationship(back_populates="street", order_by="Community.code")


class Community(UUIDPrimaryKey, Base):
    """社区 (居委会): 3-digit code within its street, used in the 17-digit health-record number."""

    __tablename__ = "communities"
    __table_args__ = (UniqueConstraint("street_id", "code"), UniqueConstraint("street_id", "name"))

    street_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("streets.id"))
    code: Mapped[str] = mapped_column(String(3))
    name: Mapped[str] = mapped_column(String(40))

    street: Mapped[Street] = relationship(back_populates="communities")


class Institution(UUIDPrimaryKey, Timestamps, Base):
    """社康中心: the unit of data isolation. Its public details are not personal data."""

    __tablename__ = "institutions"

    his_code: Mapped[str] = mapped_column(String(32), unique=True)  # HIS 机构编码
    name: Mapped[str] = mapped_column(String(100), unique=True)
    street_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("streets.id"), index=True)
    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("communities.id"), index=True)
    address: Mapped[str] = mapped_column(String(200))
    longitude: Mapped[float | None]
    latitude: Mapped[float | None]
    phone: Mapped[str | None] = mapped_column(String(32))
    opening_hours: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)
    is_demo: Mapped[bool] = mapped_column(default=False)

    street: Mapped[Street] = relationship(lazy="joined")
    community: Mapped[Community] = relationship(lazy="joined")
