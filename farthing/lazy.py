"""A package's public names, imported when first used instead of when the package is.

``farthing.paywall`` re-exports names from every corner of the paywall; any
import of one of its submodules runs its ``__init__`` first. Loading them all
there made a light module (a command's option declarations) cost the whole
paywall and web3. A package using :func:`lazy_exports` writes its re-exports
once, as ``from … import …`` lines under ``if TYPE_CHECKING:`` (what type
checkers and readers see); at run time those lines are read from the
package's own source and each name is imported on first access.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, source: str
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package`` from its ``if TYPE_CHECKING:`` imports."""
    homes = _type_checking_imports(Path(source))

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # the next access is a plain lookup
        return value

    def __dir__() -> list[str]:
        return sorted({*importlib.import_module(package).__dict__, *homes})

    return sorted(homes, key=_isort_key), __getattr__, __dir__


def _type_checking_imports(source: Path) -> dict[str, str]:
    homes: dict[str, str] = {}
    for node in ast.parse(source.read_text(), filename=str(source)).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    for alias in statement.names:
                        homes[alias.asname or alias.name] = statement.module
    if not homes:
        raise ImportError(f"{source} re-exports nothing under `if TYPE_CHECKING:`")
    return homes


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, Classes, functions.
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)
