"""Farthing installs under the single `farthing` namespace, with curated, sorted `__all__` lists.

It checks the installed import system, not the source tree: a fresh interpreter
outside the repository must not find top-level `wallet`, `agents`, `paywall` or
`inference` modules, and every public module's `__all__` is sorted and names
only things that exist.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import tomllib
from pathlib import Path

import pytest

import farthing
from tests import zygote

REPO = Path(__file__).resolve().parents[1]
PACKAGES = [
    "farthing",
    "farthing.wallet",
    "farthing.ledger",
    "farthing.paywall",
    "farthing.agents",
    "farthing.inference",
    "farthing.contracts",
    "farthing.dashboard",
    "farthing.jobs",
]


@pytest.mark.parametrize(
    "name", ["wallet", "agents", "paywall", "inference", "ledger", "contracts", "jobs"]
)
def test_no_top_level_module_is_installed(name: str, tmp_path: Path) -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.find_spec({name!r})\n"
        "sys.exit(0 if spec is None else 1)\n"
    )
    # Run from an empty directory so the repository itself is not on sys.path.
    proc = zygote.run_process(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, check=False
    )
    assert proc.returncode == 0, f"a top-level module named {name!r} is importable"


def test_farthing_wallet_imports_from_anywhere(tmp_path: Path) -> None:
    proc = zygote.run_process(
        [sys.executable, "-c", "import farthing.wallet, farthing.ledger, farthing.contracts"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def _public_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        # Every public module at any depth: the schemes, the edge, the facilitator …
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            # (Alembic's migration scripts are run by Alembic, not imported.)
            parts = info.name.split(".")
            if "migrations" not in parts and not any(p.startswith("_") for p in parts):
                names.append(info.name)
    return names


def _isort_key(name: str) -> tuple[int, str]:
    # The isort style (ruff RUF022): CONSTANTS, then Classes, then functions.
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


@pytest.mark.parametrize("module_name", _public_modules())
def test_all_is_sorted_and_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} has no __all__"
    assert list(exported) == sorted(exported, key=_isort_key), (
        f"{module_name}.__all__ is not sorted"
    )
    assert len(set(exported)) == len(exported), f"{module_name}.__all__ has duplicates"
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name!r}"


def test_version_is_exposed() -> None:
    assert farthing.__version__


def test_every_package_folder_is_installed() -> None:
    # A subpackage missing from pyproject's list works in the editable install
    # and vanishes from a wheel: every folder with an __init__.py is listed.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {folder: name for name, folder in config["package-dir"].items()}
    found = set()
    for folder, name in folders.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            if "__pycache__" not in relative.parts:
                found.add(".".join([name, *relative.parts]))
    missing = sorted(found - set(config["packages"]))
    assert not missing, f"packages not listed in pyproject.toml: {missing}"
