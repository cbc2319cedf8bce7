"""Placeholder: mini-program payment endpoints (/mp/v1/payments)."""

from app.core.api import Blueprint

blp = Blueprint("mp_payments", __name__, url_prefix="/mp/v1", description="小程序支付")
