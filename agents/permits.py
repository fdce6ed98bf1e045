"""What the chain shows of an ``upto`` permit the agent signed, and the permit's nonce.

A seller's ``PAYMENT-RESPONSE`` names a transaction and an amount; neither is
taken on its word (``farthing.agents.upto``). The chain's side is read by
the scheme's own reader (``farthing.paywall.schemes.upto.settlement``, which
the seller's sweep uses too): :func:`settlement_in` accepts the named
transaction only if it is a call of the x402UptoPermit2Proxy (``settle`` or
``settleWithPermit``) that spends *this* permit (its owner and its Permit2
nonce) and succeeded, and then the amount is what the token's ``Transfer``
logs in it moved from the payer, to whom, and anything it moved elsewhere. A
replayed receipt of another payment, a transaction that is not a
settlement, one that reverted or is not mined, each answers a snake_case
reason instead. :func:`nonce_used` reads Permit2's nonce bitmap: a used
nonce means the permit can never move money again. :func:`find_settlement`
looks for the settlement of a used permit among the proxy's logs, for
``farthing.agents.upto.resolve_upto`` when the seller never said.

What is the agent's own is :func:`permit_nonce`: derived from the payment
id, so a retry signs the same permit.
"""

from __future__ import annotations

import hashlib

from farthing.paywall.schemes.upto.settlement import (
    PermitSettlement,
    find_settlement,
    nonce_used,
    settlement_in,
)

__all__ = [
    "PermitSettlement",
    "find_settlement",
    "nonce_used",
    "permit_nonce",
    "settlement_in",
]


def permit_nonce(payment_id: int, payer: str) -> int:
    """The Permit2 nonce of an ``upto`` payment: a function of its id, so a retry signs the same one."""
    digest = hashlib.sha256(
        b"farthing.agents.upto-nonce:" + payment_id.to_bytes(16, "big") + bytes.fromhex(payer[2:])
    ).digest()
    return int.from_bytes(digest, "big")
