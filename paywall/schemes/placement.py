"""Placing contract code on a dev chain, shared by the schemes that bring their own contracts.

The official SDKs hard-code the canonical contract addresses, so on a dev
chain (the memory chain or anvil) each scheme writes its own contracts'
runtime code at those addresses (``place_channel_contracts``,
``place_auth_capture_contracts``). This module is what they share: running a
constructor read-only to get runtime code with its immutables filled in,
writing code at an address, and the idempotent loop over what is wanted.
Real networks use the deployed official contracts and are refused here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from farthing.invariant import invariant
from farthing.wallet.chain import Call, Chain
from farthing.wallet.errors import ChainError, DeploymentError

__all__ = [
    "MULTICALL3_ADDRESS",
    "place_code",
    "runtime_code",
    "set_code",
]

# Multicall3's well-known address: the same on every chain that has one.
MULTICALL3_ADDRESS: Final = "0xcA11bde05977b3631167028862bE2a173976CA11"


def runtime_code(chain: Chain, creation: bytes, *, what: str) -> bytes:
    """Run creation code read-only; its return data is the runtime code, immutables filled in."""
    result = chain.call(Call(None, creation))
    if not result.ok or not result.return_data:
        raise DeploymentError(f"the {what} contracts' constructor failed: {result.revert_message}")
    return bytes(result.return_data)


def set_code(chain: Chain, address: str, code: bytes, *, what: str) -> None:
    """Write ``code`` at ``address`` on a dev chain; anything else raises ``ChainError``."""
    if not chain.is_dev:
        raise ChainError(f"{chain!r} is not a dev chain: use the deployed {what} contracts there")
    chain.set_code(address, code)


def place_code(chain: Chain, wanted: Mapping[str, bytes], *, what: str) -> None:
    """Write each address's wanted code where it differs; a Multicall3 already there is kept.

    Idempotent: code already in place is left alone, so nothing is mined.
    """
    for address, code in wanted.items():
        existing = chain.code_at(address)
        if address == MULTICALL3_ADDRESS and existing:
            continue  # a chain that has the original keeps it
        if existing != code:
            set_code(chain, address, code, what=what)
            invariant(chain.code_at(address) == code, f"code did not land at {address}")
