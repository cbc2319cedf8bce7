"""Resident-facing API of the WeChat mini-program (`/mp/v1`).

No rules here: each module translates HTTP and calls `app/<domain>/services`.

- `auth.py`: `POST /mp/v1/auth/login` (WeChat code -> our resident token `rt_...`), logout, me;
  registers the `rt_` authenticator (principal kind and role `resident`) and the
  `flask wechat-sandbox` command (the loopback WeChat API emulator for demos).
- `identity.py`: identity binding (实名绑定) and family members (代理), with SMS one-time codes.
- `doctors.py`: the public doctor library (another feature).
"""
