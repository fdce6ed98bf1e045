"""Naming a contract's custom error from a revert message, for the schemes that bind contracts.

Each scheme builds its table of error selectors from its own artifacts
(:func:`error_selectors`) and reads a revert with :func:`custom_error` (the
backends report undecoded revert data differently: eth-tester as a bytes
literal, JSON-RPC as hex, so both forms are read). A binding's failed
transaction takes that error as its snake_case reason
(:func:`with_error_reason`, :func:`error_reason`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from farthing.contracts import load_artifact
from farthing.wallet.abi_words import keccak
from farthing.wallet.chain import TxResult

__all__ = ["custom_error", "error_reason", "error_selectors", "with_error_reason"]


def error_selectors(artifact_names: Iterable[str]) -> dict[bytes, str]:
    """The 4-byte selector of every custom error in these artifacts' ABIs, to its name."""
    selectors: dict[bytes, str] = {}
    for name in artifact_names:
        for item in load_artifact(name).abi:
            if item["type"] == "error":
                signature = f"{item['name']}({','.join(p['type'] for p in item['inputs'])})"
                selectors[keccak(signature.encode())[:4]] = item["name"]
    return selectors


def custom_error(revert_message: str | None, selectors: Mapping[bytes, str]) -> str | None:
    """The custom error in ``selectors`` behind a revert message, or None."""
    if not revert_message:
        return None
    data: bytes | None = None
    text = revert_message.strip()
    if text.startswith(("b'", 'b"')):
        try:
            literal = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            literal = None
        data = literal if isinstance(literal, bytes) else None
    if data is None:
        found = re.search(r"0x([0-9a-fA-F]{8})", text)
        data = bytes.fromhex(found.group(1)) if found else None
    return None if data is None else selectors.get(data[:4])


def error_reason(name: str) -> str:
    """A custom error's name as a snake_case reason: ``InvalidSignature`` → ``invalid_signature``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def with_error_reason(
    result: TxResult, custom_error_name: Callable[[str | None], str | None]
) -> TxResult:
    """``result``, with the custom error its revert names (if it failed with one) as its reason."""
    name = None if result.ok else custom_error_name(result.revert_message)
    return result if name is None else replace(result, reason=error_reason(name))
