"""Placeholder: the payment sandbox's payer simulator (development only)."""

from flask import Blueprint

web = Blueprint("billing_sandbox", __name__, url_prefix="/_sandbox")
