"""Plumbing shared by every domain (no business rules here).

The Chinese validation messages are installed as soon as the package is imported: marshmallow
copies a field class's default messages into each field when the field is *created*, so they must
be in place before any schema module of the project is imported (a worker, a CLI tool or a test
may import schemas long before `create_app` runs). Every module under `app/` imports this package
first, through `app/__init__.py`.
"""

from app.core import i18n as _i18n

_i18n.install()
