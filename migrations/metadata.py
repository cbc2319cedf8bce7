"""The complete model metadata, for Alembic (env.py) and the migration test.

`Base.metadata` only knows the tables whose modules have been imported. `load_metadata()` imports
every model module found on disk, so a new domain is picked up without editing this file:

- every module of `app/core/` (plumbing tables: audit_events, outbox_messages, idempotency_keys);
- every `app/<domain>/models.py`, or every module of an `app/<domain>/models/` package.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from sqlalchemy import MetaData

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "app"


def model_module_names() -> list[str]:
    """Dotted names of every module that may declare tables, in a stable order."""
    names = [f"app.core.{info.name}" for info in pkgutil.iter_modules([str(APP_DIR / "core")])]
    for domain in sorted(p for p in APP_DIR.iterdir() if (p / "__init__.py").is_file()):
        if domain.name == "core":
            continue
        if (domain / "models.py").is_file():
            names.append(f"app.{domain.name}.models")
        elif (domain / "models" / "__init__.py").is_file():
            package = f"app.{domain.name}.models"
            names.append(package)
            names.extend(
                info.name for info in pkgutil.walk_packages([str(domain / "models")], prefix=f"{package}.")
            )
    return sorted(names)


def load_metadata() -> MetaData:
    """Import every model module and return the shared `Base.metadata`."""
    for name in model_module_names():
        importlib.import_module(name)
    from app.core.db import Base

    return Base.metadata
