"""Billing HTTP routes: staff API (`/api/v1/billing`), provider callbacks (`/callbacks`), H5 cashier (`/pay`)."""
