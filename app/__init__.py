"""罗湖社康服务信息系统 backend: the application factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from redis import Redis

from app import config as config_module
from app.billing import providers
from app.core import crypto, http, i18n, logs
from app.core import redis as redis_core
from app.core.api import Api, check_route_auth
from app.core.db import db
from app.core.errors import register_error_handlers

API_TITLE = "罗湖社康服务信息系统 API"
API_VERSION = "v1"


def create_app(
    config: Mapping[str, Any] | None = None, *, redis_connection: Redis[bytes] | None = None
) -> Flask:
    """Build the application. `config` overrides environment settings (tests, tools)."""
    settings = config_module.load_settings(config)
    config_module.check_production(settings)

    app = Flask(__name__, instance_path=str(config_module.ROOT / "instance"))
    app.config.update(settings)
    app.config.update(
        DEBUG=False,
        PROPAGATE_EXCEPTIONS=False,
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,
        JSON_SORT_KEYS=False,
        API_TITLE=API_TITLE,
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/swagger-ui/",
        API_SPEC_OPTIONS={
            "info": {
                "description": (
                    "罗湖社康服务信息系统: staff (`/api/v1`), mini-program (`/mp/v1`) and partner (`/open/v1`) "
                    "APIs. Errors share one shape `{code, status, message, errors}`; `message` is Chinese."
                )
            },
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Session token"}
                }
            },
        },
    )

    logs.configure(app.config["LOG_LEVEL"], app.config["LOG_JSON"])
    i18n.install()
    crypto.configure(
        crypto.Keyring.from_settings(
            app.config["FIELD_ENCRYPTION_KEYS"],
            app.config["FIELD_ENCRYPTION_ACTIVE_KEY"],
            app.config["BLIND_INDEX_KEY"],
        )
    )
    db.init_app(app)
    redis_core.init_app(app, redis_connection)
    http.init_app(app)
    providers.init_app(app)
    _serve_swagger_ui(app)

    api = Api(app)
    _register_blueprints(api, app)
    register_error_handlers(app)

    from app import cli

    cli.register(app)
    check_route_auth(app)

    if (
        not app.config["REDIS_URL"]
        and app.config["APP_ENV"] == "development"
        and os.environ.get("LUOHU_EMBEDDED_WORKER") == "1"
    ):
        from app.jobs import start_embedded_worker

        start_embedded_worker(app)
    return app


# Every blueprint of the API, as "module:attribute"; one line per blueprint.
BLUEPRINTS: tuple[str, ...] = (
    "app.accounts.routes:auth_blp",
    "app.accounts.routes:staff_blp",
    "app.institutions.routes:blp",
    "app.audit.routes:blp",
    "app.residents.routes:blp",
    "miniprogram_api.auth:blp",
    "miniprogram_api.identity:blp",
    "app.doctors.routes:blp",
    "app.doctors.routes:mi_blp",
    "app.teams.routes:blp",
    "miniprogram_api.doctors:blp",
    "app.billing.routes.desk:blp",
    "app.billing.routes.orders:blp",
    "app.billing.routes.refunds:blp",
    "app.billing.routes.aggregate:blp",
    "app.billing.routes.reconciliation:blp",
    "app.billing.routes.cashier:blp",
    "miniprogram_api.payments:blp",
    "app.contracts.routes.packages:blp",
    "app.contracts.routes.agreements:blp",
    "app.contracts.routes.printing:blp",
    "app.contracts.routes.applications:blp",
    "app.contracts.routes.signing:blp",
    "app.contracts.routes.contracts:blp",
    "miniprogram_api.contracts:blp",
    "miniprogram_api.my_doctor:blp",
    "app.health_records.routes.records:blp",
    "app.health_records.routes.forms:blp",
    "app.health_records.routes.cases:blp",
    "app.health_records.routes.card:blp",
    "miniprogram_api.health_records:blp",
)
# Plain Flask blueprints kept out of OpenAPI: provider callbacks, the H5 cashier's HTML pages, and
# the payment sandbox's payer simulator (development only).
WEB_BLUEPRINTS: tuple[str, ...] = (
    "app.billing.routes.callbacks:web",
    "app.billing.routes.cashier:web",
    "app.billing.routes.sandbox:web",
)


def _register_blueprints(api: Api, app: Flask) -> None:
    import importlib

    for target in BLUEPRINTS:
        module, _, attribute = target.partition(":")
        api.register_blueprint(getattr(importlib.import_module(module), attribute))
    for target in WEB_BLUEPRINTS:
        module, _, attribute = target.partition(":")
        app.register_blueprint(getattr(importlib.import_module(module), attribute))


def _serve_swagger_ui(app: Flask) -> None:
    """Serve Swagger UI's assets from the installed package: /docs works offline."""
    import swagger_ui_bundle
    from flask import send_from_directory

    from app.core.api import public_route

    assets = swagger_ui_bundle.swagger_ui_path

    @app.get("/swagger-ui/<path:filename>")
    @public_route
    def swagger_ui_asset(filename: str) -> Any:
        return send_from_directory(assets, filename)
