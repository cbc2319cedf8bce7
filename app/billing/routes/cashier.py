"""Placeholder: the H5 cashier pages (plain Flask blueprint) and its JSON API (`/pay/api`)."""

from flask import Blueprint as FlaskBlueprint

from app.core.api import Blueprint

web = FlaskBlueprint("billing_cashier_pages", __name__, url_prefix="/pay")
blp = Blueprint("billing_cashier", __name__, url_prefix="/pay/api", description="H5 收银台")
