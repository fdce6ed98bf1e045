"""Keep the interpreter's recursion limit where it was (DESIGN.md §13).

Two dependencies raise it as a side effect of being imported:

- ``py_ecc`` (imported by eth_account through eth_keyfile, so by nearly every
  Farthing module) sets it to 100,000, for BLS pairing code Farthing never
  calls;
- ``eth`` (py-evm, imported by eth_tester for the memory chain) sets it to
  12,288, so that an EVM call stack 1,024 frames deep fits in Python frames;
  no contract of ours nests calls more than a few deep.

Under a raised limit a deep input no longer raises ``RecursionError``: one
request of 100,000 brackets made ``json.loads`` overflow the C stack and kill
``farthing jobs serve`` with SIGSEGV. So importing ``farthing`` (the first
thing any Farthing module does) installs :func:`keep_recursion_limit`: an
import hook that puts the limit back right after either module has run, in
whatever order and wherever they are first imported. A limit already raised by
them before ``farthing`` was imported is put back to CPython's default.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Final

__all__ = ["RAISING_MODULES", "RECURSION_LIMIT_DEFAULT", "keep_recursion_limit"]

RAISING_MODULES: Final = frozenset({"py_ecc", "eth"})
RECURSION_LIMIT_DEFAULT: Final = 1000  # CPython's own


class _RestoringLoader(Loader):
    """Runs the module as its own loader would, then puts the limit back."""

    def __init__(self, inner: Loader, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self._inner.exec_module(module)
        finally:
            sys.setrecursionlimit(self._limit)

    def __getattr__(self, name: str) -> Any:
        # is_package, get_code, get_resource_reader…: the real loader's.
        return getattr(self._inner, name)


class _KeepRecursionLimit(MetaPathFinder):
    """Finds nothing itself: wraps the real loader of a module that raises the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in RAISING_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _KeepRecursionLimit):
                continue
            find = getattr(finder, "find_spec", None)
            spec = None if find is None else find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RestoringLoader(spec.loader, self.limit)
                return spec  # type: ignore[no-any-return]
        return None


def keep_recursion_limit() -> int:
    """Install the hook once, put the limit back now if needed; return the limit kept."""
    for finder in sys.meta_path:
        if isinstance(finder, _KeepRecursionLimit):
            return finder.limit
    current = sys.getrecursionlimit()
    raised = any(name in sys.modules for name in RAISING_MODULES)
    limit = min(current, RECURSION_LIMIT_DEFAULT) if raised else current
    sys.setrecursionlimit(limit)
    sys.meta_path.insert(0, _KeepRecursionLimit(limit))
    return limit
