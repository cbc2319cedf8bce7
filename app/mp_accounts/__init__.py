"""Mini-program accounts: WeChat users, resident tokens, and identity bindings (实名绑定, 代理).

The resident-facing routes are in `miniprogram_api/`; the rules are here:

- `services/sessions.py`: WeChat login (code2Session) and our own opaque resident tokens (`rt_`).
- `services/identity.py`: binding a WeChat user to a resident (self) or to family members (proxy),
  proven by name + ID number and an SMS one-time code to the phone on the resident's record.
- `services/otp.py`, `services/limits.py`: one-time codes and the abuse limits (DATA-08), in Redis,
  failing closed.
- `providers.py`: which WeChat adapter the application uses (real, emulator or fake).
"""
