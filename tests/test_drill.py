"""The breakage drill (`make breakages`, not part of `make test`) cannot rot unseen: each
of its breakages must still apply to the code, exactly once, and name tests that exist.

A refactor that moves the code a breakage patches would otherwise only be found the next
time someone runs the drill, which is when its answer is needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from breakages import BREAKAGES, ROOT, Breakage


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda breakage: breakage.name)
def test_each_breakage_applies_once_and_names_existing_tests(breakage: Breakage) -> None:
    source = (ROOT / breakage.path).read_text()
    assert source.count(breakage.old) == 1, (
        f"{breakage.name}: its pattern occurs {source.count(breakage.old)} times in "
        f"{breakage.path}; update the entry in tests/breakages.py to the moved code")
    for test in breakage.tests:
        path, _, name = test.partition("::")
        assert (ROOT / path).is_file(), f"{breakage.name}: no test file {path}"
        if name:
            assert f"def {name.split('[')[0]}(" in Path(ROOT / path).read_text(), (
                f"{breakage.name}: no test {name} in {path}")
