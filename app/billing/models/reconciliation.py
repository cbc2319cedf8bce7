"""Daily bill reconciliation models (对账). Filled in by the reconciliation work."""

__all__: list[str] = []
