"""The wheel carries the package's data files: the Lua scripts and the sample site."""

from __future__ import annotations

import zipfile
from pathlib import Path

from hatchling.builders.wheel import WheelBuilder

import atlasreg_cursor

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(atlasreg_cursor.__file__).parent


def _wheel_names(directory: Path) -> set[str]:
    """Build the wheel (as ``pip wheel`` would, with the project's backend) and list it."""
    wheel = next(iter(WheelBuilder(str(ROOT)).build(directory=str(directory))))
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _source_files() -> list[str]:
    """Every file of the package in the source tree, as the wheel names it."""
    return sorted(
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


def test_the_wheel_holds_every_file_of_the_package(tmp_path: Path) -> None:
    """Modules, ``py.typed``, the Lua scripts and the sample site's content all ship."""
    names = _wheel_names(tmp_path)
    sources = _source_files()
    lua = [n for n in sources if n.endswith(".lua")]
    site = [n for n in sources if n.startswith("atlasreg_cursor/sample_site/content/")]

    assert "atlasreg_cursor/adapters/standalone/lua/receive.lua" in lua
    assert {"index.html", "ocorrencias.csv", "avisos.json"} <= {Path(n).name for n in site}
    assert [] == [name for name in sources if name not in names]
    assert "atlasreg_cursor/py.typed" in names
