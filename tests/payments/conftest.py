from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from tests.payments.harness import Harness

HARNESSES = {
    "fake": "tests.payments.fake_support:make_fake_harness",
    "wechat": "tests.payments.wechat_support:make_wechat_harness",
    "alipay": "tests.payments.alipay_support:make_alipay_harness",
}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    module, _, name = HARNESSES[request.param].partition(":")
    factory = getattr(importlib.import_module(module), name)
    with factory() as built:
        yield built
