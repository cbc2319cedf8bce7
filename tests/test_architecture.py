"""The rules of the house, enforced on the source (ARCHITECTURE.md) and on the running app.

- Adapters (`payments/`, `notifications/`, `app/integrations/`) are framework-free: no Flask, no
  SQLAlchemy, nothing of the application.
- Provider SDKs are imported only inside their adapter packages.
- Only `app/core/db.py` commits; services never commit.
- Every route declares who may call it (API-03) and is documented in the OpenAPI document, and the
  document lists no route that does not exist (API-09).
- No `print(` in application code (logs go through `logging`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from app.core.api import Blueprint, check_route_auth, route_auth_specs

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("app", "miniprogram_api", "payments", "notifications")
ADAPTER_DIRS = ("payments", "notifications", "app/integrations")
# Top-level modules an adapter must not import: the web framework, the database, the application.
FRAMEWORK_MODULES = (
    "flask",
    "flask_smorest",
    "flask_cors",
    "sqlalchemy",
    "alembic",
    "app",
    "miniprogram_api",
)
# Provider SDK -> the packages allowed to import it.
SDK_HOMES: dict[str, tuple[str, ...]] = {
    "wechatpy": ("payments", "notifications", "app/integrations"),
    "alipay": ("payments",),
    "tencentcloud": ("notifications",),
    "aliyunsdkcore": ("notifications",),
    "aliyunsdkdysmsapi": ("notifications",),
    "alibabacloud_dysmsapi20170525": ("notifications",),
    "qcloudsms_py": ("notifications",),
}
DB_MODULE = "app/core/db.py"


@dataclass(frozen=True)
class Source:
    path: str  # relative to the repository, with forward slashes
    tree: ast.Module

    def within(self, *folders: str) -> bool:
        return any(self.path == f"{f}.py" or self.path.startswith(f"{f}/") for f in folders)

    @property
    def package(self) -> str:
        return next((f for f in ADAPTER_DIRS if self.within(f)), self.path.split("/")[0])


def _sources() -> list[Source]:
    found = []
    for folder in CODE_DIRS:
        base = ROOT / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            if any(part.startswith(".") or part == "__pycache__" for part in path.parts):
                continue
            relative = path.relative_to(ROOT).as_posix()
            found.append(Source(relative, ast.parse(path.read_text(encoding="utf-8"), filename=relative)))
    return found


SOURCES = _sources()


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import, including those inside functions."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            # `from app import core` imports app.core.
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_scan_sees_the_code():
    paths = {s.path for s in SOURCES}
    assert DB_MODULE in paths
    assert "app/accounts/services.py" in paths


# --- (a) adapters are framework-free ----------------------------------------------------------------


def _own_package_prefix(source: Source) -> str:
    return source.package.replace("/", ".")


def test_adapters_import_neither_flask_nor_the_database_nor_the_application():
    problems = []
    for source in SOURCES:
        if not source.within(*ADAPTER_DIRS):
            continue
        own = _own_package_prefix(source)
        for line, module in _imports(source.tree):
            if module == own or module.startswith(own + "."):
                continue  # inside its own adapter package (app/integrations lives under app/)
            if _top(module) in FRAMEWORK_MODULES:
                problems.append(f"{source.path}:{line} imports {module}")
    assert not problems, "adapters must stay framework-free:\n" + "\n".join(sorted(set(problems)))


def test_provider_sdks_are_imported_only_inside_their_adapters():
    problems = []
    for source in SOURCES:
        for line, module in _imports(source.tree):
            homes = SDK_HOMES.get(_top(module))
            if homes is not None and not source.within(*homes):
                problems.append(f"{source.path}:{line} imports {module} (allowed only in {', '.join(homes)})")
    assert not problems, "\n".join(sorted(set(problems)))


# --- (b) only app/core/db.py commits -------------------------------------------------------------


def _db_module_aliases(tree: ast.AST) -> set[str]:
    """Names bound to the module app.core.db itself (`from app.core import db as core_db`)."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "app.core" and node.level == 0:
            aliases |= {a.asname or a.name for a in node.names if a.name == "db"}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name == "app.core.db" and a.asname}
    return aliases


def _commit_attributes(source: Source) -> Iterator[tuple[int, str]]:
    allowed = _db_module_aliases(source.tree)
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Attribute) and node.attr == "commit":
            owner = ast.unparse(node.value)
            if owner in allowed or owner == "app.core.db":
                continue  # the `commit` function of app.core.db, reached through the module
            yield node.lineno, f"{owner}.commit"


def test_only_app_core_db_calls_commit_on_a_session():
    problems = [
        f"{s.path}:{line} {what}"
        for s in SOURCES
        if s.path != DB_MODULE
        for line, what in _commit_attributes(s)
    ]
    assert not problems, "commit through app.core.db.commit() only:\n" + "\n".join(problems)


def _is_service_module(source: Source) -> bool:
    parts = source.path.split("/")
    return parts[0] == "app" and (
        (len(parts) == 3 and parts[2] == "services.py") or (len(parts) >= 4 and parts[2] == "services")
    )


def test_services_never_commit():
    services = [s for s in SOURCES if _is_service_module(s)]
    assert any(s.path == "app/accounts/services.py" for s in services)
    problems = []
    for source in services:
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Call):
                name = (
                    node.func.id
                    if isinstance(node.func, ast.Name)
                    else (node.func.attr if isinstance(node.func, ast.Attribute) else None)
                )
                if name in ("commit", "transaction"):
                    problems.append(f"{source.path}:{node.lineno} calls {ast.unparse(node.func)}()")
            elif isinstance(node, ast.ImportFrom) and node.module == "app.core.db":
                imported = {a.name for a in node.names} & {"commit", "transaction"}
                if imported:
                    problems.append(f"{source.path}:{node.lineno} imports {', '.join(sorted(imported))}")
    assert not problems, "services never commit; their callers do:\n" + "\n".join(problems)


def test_the_commit_rule_catches_what_it_should():
    def found(code: str, path: str = "app/x/services.py") -> list[tuple[int, str]]:
        return list(_commit_attributes(Source(path, ast.parse(code))))

    assert found("db.session.commit()") == [(1, "db.session.commit")]
    assert found("session.commit()") == [(1, "session.commit")]
    assert found("hook = db.session.commit") == [(1, "db.session.commit")]
    assert found("from app.core import db as core_db\ncore_db.commit()") == []
    assert found("from app.core.db import commit\ncommit()") == []


# --- (c) every route declares who may call it ------------------------------------------------------


def test_every_route_declares_its_auth(app):
    specs = route_auth_specs(app)
    assert specs, "no routes found"
    missing = sorted(f"{method} {rule}" for (rule, method), spec in specs.items() if spec is None)
    assert not missing, f"routes without @blp.auth: {missing}"
    for (rule, method), spec in specs.items():
        assert spec is not None
        assert spec.public or spec.roles, f"{method} {rule} admits nobody"


def test_start_up_refuses_a_route_without_an_auth_declaration():
    throwaway = Flask("throwaway")
    blp = Blueprint("throwaway", __name__)

    @blp.route("/undeclared")
    def undeclared() -> str:
        return "x"

    throwaway.register_blueprint(blp)
    with pytest.raises(RuntimeError, match="GET /undeclared"):
        check_route_auth(throwaway)


# --- (d) url_map and OpenAPI agree -------------------------------------------------------------------

# Werkzeug rules outside the API description: Flask's static files, the OpenAPI document and
# Swagger UI themselves, and provider callbacks (ARCHITECTURE.md: "kept out of OpenAPI").
_NOT_DOCUMENTED = ("static", "api-docs.", "swagger_ui_asset")
_CALLBACKS = "/callbacks/"
# Plain web pages: the H5 cashier's HTML (its JSON API under /pay/api/ is documented) and the
# development-only payment sandbox.
_WEB_PAGES = ("/pay/", "/_sandbox/")
_WEB_API = "/pay/api/"


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _routes(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(_NOT_DOCUMENTED) or rule.rule.startswith(_CALLBACKS):
            continue
        if rule.rule.startswith(_WEB_PAGES) and not rule.rule.startswith(_WEB_API):
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found.add((method, _openapi_path(rule.rule)))
    return found


def _documented(app: Flask) -> set[tuple[str, str]]:
    document = app.test_client().get("/openapi.json").get_json()
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(m.upper(), path) for path, item in document["paths"].items() for m in item if m in methods}


def test_every_route_is_documented_in_openapi(app):
    undocumented = sorted(_routes(app) - _documented(app))
    assert not undocumented, f"routes missing from /openapi.json (API-09): {undocumented}"


def test_openapi_documents_no_route_that_does_not_exist(app):
    phantom = sorted(_documented(app) - _routes(app))
    assert not phantom, f"/openapi.json documents routes the app does not serve: {phantom}"


def test_callbacks_stay_out_of_openapi(app):
    leaked = sorted(p for _, p in _documented(app) if p.startswith(_CALLBACKS))
    assert not leaked


# --- (e) no print() -------------------------------------------------------------------------------------


def test_no_print_in_application_code():
    problems = [
        f"{s.path}:{node.lineno}"
        for s in SOURCES
        for node in ast.walk(s.tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]
    assert not problems, f"use logging (or click.echo in CLI commands), not print(): {problems}"
