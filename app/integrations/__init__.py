"""Framework-free adapters to external systems (WeChat mini-program API; later HIS, regional
platform, medical insurance, partner apps).

Rules (ARCHITECTURE.md, rule 5): modules here import neither Flask nor SQLAlchemy nor any other
part of `app`; provider SDKs are imported only here. Each adapter has a `Protocol`, neutral frozen
dataclasses and errors, the real implementation and a fake passing the same contract tests.
Loopback emulators of the providers live in `sandbox/`.
"""
