"""`flask` commands: demo data, imports, audit verification, key rotation, documentation helpers."""

from __future__ import annotations

import secrets
import string
import sys
import uuid
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import Text, select, type_coerce
from sqlalchemy.orm.attributes import flag_modified

from app import config as config_module
from app.core import audit, crypto
from app.core.db import Base, db, transaction

DEMO_CSV = Path(__file__).parent / "institutions" / "data" / "demo_centres.csv"


def register(app: Flask) -> None:
    from app.contracts.seed import seed_contracts

    app.cli.add_command(seed_contracts)
    for command in (
        seed_demo,
        import_centres,
        audit_verify,
        billing_invariants,
        rotate_field_keys,
        config_table,
    ):
        app.cli.add_command(command)


def _demo_password() -> str:
    seed = current_app.config["DEMO_PASSWORD_SEED"]
    alphabet = string.ascii_letters + string.digits
    if seed:
        import random

        rng = random.Random(seed)  # noqa: S311 - reproducible demo password on request only
        body = "".join(rng.choice(alphabet) for _ in range(10))
    else:
        body = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"Lh-{body}"


@click.command("import-centres")
@with_appcontext
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_centres(csv_path: Path) -> None:
    """Create or update centres from a CSV file (columns: see README)."""
    from app.institutions import services

    try:
        rows, demo = services.read_centre_csv(csv_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(str(exc)) from exc
    with transaction():
        report = services.import_centres(rows, demo=demo)
    click.echo(
        f"centres created: {report.created}, updated: {report.updated}, rejected: {len(report.errors)}"
    )
    for line, message in report.errors:
        click.echo(f"  line {line}: {message}", err=True)
    if report.errors:
        sys.exit(1)


@click.command("seed-demo")
@with_appcontext
def seed_demo() -> None:
    """Demo data: the 45 demo centres, a district admin and five staff per centre."""
    from app.accounts.models import StaffUser
    from app.accounts.services import hash_password
    from app.core.auth import Role
    from app.institutions import services
    from app.institutions.models import Institution

    if config_module.is_production(current_app.config):
        raise click.ClickException("seed-demo refuses to run in production mode")
    rows, _ = services.read_centre_csv(DEMO_CSV.read_text(encoding="utf-8"))
    with transaction():
        services.import_centres(rows, demo=True)
    centres = list(db.session.execute(select(Institution).order_by(Institution.his_code)).scalars())
    existing = set(db.session.execute(select(StaffUser.username)).scalars())
    password = _demo_password()
    shared_hash = hash_password(password)  # one hash for every demo account: seeding stays fast
    created = 0

    def add(username: str, name: str, role: Role, institution_id: uuid.UUID | None, phone: str) -> None:
        nonlocal created
        if username in existing:
            return
        db.session.add(
            StaffUser(
                id=uuid.uuid4(),
                username=username,
                name=name,
                role=role,
                phone=phone,
                institution_id=institution_id,
                password_hash=shared_hash,
                must_change_password=False,
            )
        )
        created += 1

    with transaction():
        add("district.admin", "区管理员", Role.DISTRICT_ADMIN, None, "13900000000")
        add("district.auditor", "区审计员", Role.AUDITOR, None, "13900000001")
        staff = (
            ("admin", "管理员", Role.CENTRE_ADMIN),
            ("doctor1", "医生甲", Role.DOCTOR),
            ("doctor2", "医生乙", Role.DOCTOR),
            ("nurse", "护士", Role.NURSE),
            ("cashier", "收费员", Role.CASHIER),
        )
        for n, centre in enumerate(centres, start=1):
            prefix = centre.his_code.lower()
            for k, (suffix, label, role) in enumerate(staff):
                add(
                    f"{prefix}.{suffix}",
                    f"{centre.community.name}{label}",
                    role,
                    centre.id,
                    f"139{n:04d}{k:04d}",
                )
    expected = 2 + len(staff) * len(centres)
    click.echo(f"demo centres: {len(centres)}; demo staff accounts created: {created}")
    if created:
        click.echo("")
        click.echo("  DEMO ACCOUNTS (printed once; the password is not stored anywhere in clear)")
        click.echo(
            "  district.admin, district.auditor, and per centre <his code>.admin / .doctor1 / .doctor2 /"
        )
        click.echo("  .nurse / .cashier, e.g. lh001.admin, lh001.doctor1, lh045.cashier")
        # Accounts that existed before this run keep the password they were given then.
        whom = "every demo account" if created == expected else f"the {created} demo accounts created now"
        click.echo(f"  password for {whom}: {password}")
    _seed_demo_doctors(centres)
    _seed_demo_residents(centres[0])
    from app.contracts.seed import seed_packages_and_templates

    with transaction():
        report = seed_packages_and_templates()
    click.echo(
        f"service packages created: {len(report.packages_created)}; "
        f"agreement templates created: {len(report.templates_created)}"
    )
    _seed_demo_health_records(centres[0])


_DEMO_SURNAMES = "张王李赵陈刘杨黄周吴徐孙马朱胡郭何林罗高"
_DEMO_GIVEN = ("建华", "晓燕", "志明", "丽娟", "国强", "秀兰", "文杰", "海燕", "伟", "静")


def _seed_demo_doctors(centres: list[Any]) -> None:
    """Per centre: the two demo doctors and the nurse as approved registrations in one team,
    so the public doctor library and signing have someone to show."""
    from datetime import date

    from app.accounts.models import StaffUser
    from app.doctors.models import Doctor
    from app.teams.models import Team, TeamMember

    created = 0
    with transaction():
        for n, centre in enumerate(centres, start=1):
            prefix = centre.his_code.lower()
            members = []
            for k, (suffix, title, role) in enumerate(
                (("doctor1", "主治医师", "gp"), ("doctor2", "主治医师", "gp"), ("nurse", "护师", "nurse")),
                start=1,
            ):
                user = db.session.execute(
                    select(StaffUser).where(StaffUser.username == f"{prefix}.{suffix}")
                ).scalar_one_or_none()
                if user is None:
                    continue
                doctor = db.session.execute(
                    select(Doctor).where(Doctor.staff_user_id == user.id)
                ).scalar_one_or_none()
                if doctor is None:
                    i = (n * 3 + k) % (len(_DEMO_SURNAMES) * len(_DEMO_GIVEN))
                    doctor = Doctor(
                        id=uuid.uuid4(),
                        institution_id=centre.id,
                        staff_user_id=user.id,
                        name=_DEMO_SURNAMES[i % len(_DEMO_SURNAMES)]
                        + _DEMO_GIVEN[(i * 7 + n) % len(_DEMO_GIVEN)],
                        sex="male" if k % 2 else "female",
                        birth_date=date(1978 + k, 1 + n % 12, 1 + n % 28),
                        phone=f"137{n:04d}{k:04d}",
                        title=title,
                        practice_licence_no=f"2204403{n:02d}{k:06d}",
                        practice_scopes=["护理"] if role == "nurse" else ["全科医学专业"],
                        qualifications=[],
                        specialties=["慢病随访"] if role == "nurse" else ["高血压管理", "糖尿病管理"],
                        introduction="演示数据：社区家庭医生团队成员。",
                        mi_doctor_code=f"D440303{n:03d}{k:03d}",
                        status="approved",
                        practice_status="active",
                        signed_count=0,
                    )
                    db.session.add(doctor)
                    created += 1
                members.append((doctor, role, k == 1))
            team_name = f"{centre.community.name}家庭医生团队"
            if members and db.session.execute(select(Team.id).where(Team.name == team_name)).first() is None:
                team = Team(
                    id=uuid.uuid4(), institution_id=centre.id, name=team_name, status="active", signed_count=0
                )
                db.session.add(team)
                db.session.flush()
                for doctor, role, leader in members:
                    db.session.add(
                        TeamMember(
                            id=uuid.uuid4(),
                            institution_id=centre.id,
                            team_id=team.id,
                            doctor_id=doctor.id,
                            role=role,
                            is_leader=leader,
                        )
                    )
    click.echo(f"demo doctor registrations created: {created} (approved, one team per centre)")


# Fictitious residents of the first demo centre: (name, birth date, sex digit, phone, groups).
DEMO_RESIDENTS: tuple[tuple[str, str, int, str, tuple[str, ...]], ...] = (
    ("张建国", "19520314", 1, "13800138001", ("hypertension",)),
    ("李秀英", "19580722", 2, "13800138002", ("diabetes_t2",)),
    ("王芳", "19880915", 4, "13800138003", ()),
    ("陈志强", "19751102", 3, "13800138004", ("hypertension", "diabetes_t2")),
)


def _demo_id_number(birth: str, sequence: int) -> str:
    from stdnum.cn import ric

    body = f"440303{birth}{sequence:03d}"
    return body + str(ric.calc_check_digit(body + "0"))


def _seed_demo_residents(centre: object) -> None:
    """Four demo residents in the first centre, so the mini-program binding can be tried at once."""
    from app.accounts.models import StaffUser
    from app.core.auth import Principal
    from app.institutions.models import Institution
    from app.residents.services import create_resident, find_by_id_number

    assert isinstance(centre, Institution)
    admin = db.session.execute(select(StaffUser).where(StaffUser.username == "district.admin")).scalar_one()
    actor = Principal(
        kind="staff", id=admin.id, role=admin.role, institution_id=None, display_name=admin.name
    )
    shown = []
    with transaction():
        for name, birth, sequence, phone, groups in DEMO_RESIDENTS:
            id_number = _demo_id_number(birth, sequence)
            shown.append((name, id_number, phone))
            if find_by_id_number(id_number) is not None:
                continue
            create_resident(
                actor,
                name=name,
                id_number=id_number,
                phone=phone,
                current_address=f"深圳市罗湖区{centre.street.name}街道{centre.community.name}社区演示路{sequence}号",
                community_id=centre.community_id,
                population_groups=groups,
                institution_id=centre.id,
            )
    click.echo("")
    click.echo(f"  DEMO RESIDENTS of {centre.name} (fictitious; for the mini-program identity binding):")
    for name, id_number, phone in shown:
        click.echo(f"  {name}  {id_number}  {phone}")


def _seed_demo_health_records(centre: Any) -> None:
    from app.health_records.seed import seed_demo_health_records

    id_numbers = {name: _demo_id_number(birth, sequence) for name, birth, sequence, _, _ in DEMO_RESIDENTS}
    with transaction():
        created = seed_demo_health_records(centre, id_numbers)
    if created:
        click.echo(f"  health records created for the demo residents: {', '.join(created)}")
        prefix = centre.his_code.lower()
        click.echo(f"  {prefix}.doctor1 holds the 严重精神障碍/肺结核 permissions; {prefix}.nurse does not")


@click.command("audit-verify")
@with_appcontext
def audit_verify() -> None:
    """Walk the audit hash chain; exit 1 and name every edited, deleted or inserted row."""
    key = str(current_app.config["AUDIT_HMAC_KEY"]).encode()
    problems = list(audit.verify_chain(db.session(), key))
    total = db.session.execute(
        select(audit.AuditEvent.seq).order_by(audit.AuditEvent.seq.desc()).limit(1)
    ).scalar()
    if problems:
        for problem in problems:
            click.echo(
                f"audit chain broken at seq {problem.seq} (id {problem.id}): {problem.problem}", err=True
            )
        sys.exit(1)
    click.echo(f"audit chain intact: {total or 0} events")


@click.command("billing-invariants")
@with_appcontext
def billing_invariants() -> None:
    """REL-07: check the payment invariants (read-only); exit 1 naming every violation."""
    from app.billing.services.invariants import violations

    found = violations()
    for violation in found:
        click.echo(
            f"{violation.rule}: {violation.object_type} {violation.object_id}: {violation.detail}", err=True
        )
    if found:
        sys.exit(1)
    click.echo("payment invariants hold")


@click.command("rotate-field-keys")
@with_appcontext
@click.option("--batch", default=500, show_default=True)
def rotate_field_keys(batch: int) -> None:
    """Re-encrypt every encrypted column under the active key (after adding a new key)."""
    ring = crypto.keyring()
    changed = 0
    for mapper in Base.registry.mappers:
        model = mapper.class_
        columns = [c for c in mapper.columns if isinstance(c.type, crypto.EncryptedString)]
        if not columns:
            continue
        for column in columns:
            table = mapper.local_table
            raw = db.session.execute(
                select(table.c.id, type_coerce(table.c[column.name], Text)).where(
                    table.c[column.name].isnot(None)
                )
            ).all()
            stale = [row_id for row_id, value in raw if crypto.Keyring.key_id_of(value) != ring.active_key_id]
            for start in range(0, len(stale), batch):
                with transaction():
                    for row_id in stale[start : start + batch]:
                        flag_modified(db.session.get_one(model, row_id), column.key)
                changed += len(stale[start : start + batch])
    click.echo(f"re-encrypted {changed} values under key {ring.active_key_id}")


@click.command("config-table")
@with_appcontext
def config_table() -> None:
    """Print the configuration table (Markdown) for the README."""
    click.echo("| variable | default | meaning |")
    click.echo("|---|---|---|")
    for setting in config_module.SETTINGS:
        default = setting.default
        if setting.name in config_module.DEV_SECRET_NAMES:
            default = "(development value)"
        click.echo(f"| `{setting.name}` | `{default}` | {setting.doc} |")
