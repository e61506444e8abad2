from __future__ import annotations

import pytest

from harness.errors import HarnessError, UnknownNameError
from harness.registry import Registry


def test_register_get_and_suggest() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("int8-dynamic")(1)
    reg.add("int8-static", 2)
    assert reg.get("int8-dynamic") == 1
    assert list(reg) == ["int8-dynamic", "int8-static"]
    with pytest.raises(UnknownNameError, match="Did you mean: int8-dynamic"):
        reg.get("int8-dynamik")
    with pytest.raises(UnknownNameError, match="Known: int8-dynamic, int8-static"):
        reg.get("zzz")


def test_duplicate_registration_is_refused() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(HarnessError, match="registered twice"):
        reg.add("a", 2)
