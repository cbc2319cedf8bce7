"""Placeholder: provider callbacks (plain Flask blueprint, kept out of OpenAPI)."""

from flask import Blueprint

web = Blueprint("billing_callbacks", __name__, url_prefix="/callbacks")
