"""README's "Map of the code" names every module of the package and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "leadrat_source"


def code_map() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Map of the code", 1)[1].split("\n## ", 1)[0]


def test_the_code_map_names_every_module_and_subpackage() -> None:
    text = code_map()
    modules = {path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py"}
    packages = {f"{path.parent.name}/" for path in PACKAGE.glob("*/__init__.py")}
    named = set(re.findall(r"`([\w/.*]+)`", text))
    assert not (modules | packages) - named, sorted((modules | packages) - named)
    gone = {name for name in named if name.endswith(".py") and not (PACKAGE / name).exists()
            and not (ROOT / name).exists()}
    assert not gone, f"the map names files that do not exist: {sorted(gone)}"


def test_the_code_map_names_the_parts_of_each_subpackage() -> None:
    text = code_map()
    for package in ("reverse_sync", "webhooks"):
        [row] = [line for line in text.splitlines() if line.startswith(f"| `{package}/`")]
        parts = {path.stem for path in (PACKAGE / package).glob("*.py")} - {"__init__"}
        assert not parts - set(re.findall(r"`(\w+)`", row)), (package, parts)
