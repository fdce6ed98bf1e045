"""Encoding a contract call from its signature, for the schemes that bind their own contracts.

Each scheme's binding keeps one table of the calls it encodes, by signature
(``name(a,(b,c),d[])``, checked against the committed ABI by a test); the
argument types are read from that signature (:func:`arg_types`), never
declared a second time, and :func:`encode_call` puts the 4-byte selector in
front of the eth-abi encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode as abi_encode

from farthing.wallet.abi_words import keccak

__all__ = ["arg_types", "encode_call"]


def arg_types(signature: str) -> list[str]:
    """The argument types of ``name(a,(b,c),d[])``, split at top-level commas."""
    inner = signature[signature.index("(") + 1 : -1]
    types: list[str] = []
    depth = start = 0
    for i, char in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            types.append(inner[start:i])
            start = i + 1
    if inner:
        types.append(inner[start:])
    return types


def encode_call(signature: str, types: Sequence[str], args: Sequence[Any]) -> bytes:
    """The calldata of ``signature`` with ``args``: its selector, then ``args`` encoded as ``types``."""
    return keccak(signature.encode())[:4] + abi_encode(list(types), list(args))
