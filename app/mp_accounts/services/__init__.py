"""Mini-program account use cases, split by topic (see the package docstring of `app.mp_accounts`).

Stable names for other features: `sessions.current_user(principal)`, `sessions.TOKEN_PREFIX`,
`identity.self_binding(principal)`, `identity.list_family(principal)`.
"""
