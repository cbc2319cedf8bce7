"""Payment-provider adapters (no Flask, no database): see `payments/base.py` for the contract."""
