"""What the chain shows of an ``upto`` permit the agent signed: used or not, by which settlement, for how much.

A seller's ``PAYMENT-RESPONSE`` names a transaction and an amount; neither is
taken on its word (``farthing.agents.upto``). :func:`settlement_in` reads
the named transaction and accepts it only if it is a call of the
x402UptoPermit2Proxy (``settle`` or ``settleWithPermit``) that spends
*this* permit (its owner and its Permit2 nonce, derived from the payment id:
:func:`permit_nonce`), that succeeded, and then the amount is what the
token's ``Transfer`` logs in it moved from the payer, to whom. A replayed
receipt of another payment, a transaction that is not a settlement, one that
reverted or is not mined, each answers a snake_case reason instead.

:func:`nonce_used` reads Permit2's nonce bitmap: a used nonce means the
permit can never move money again. :func:`find_settlement` looks for the
settlement of a used permit among the proxy's ``Settled`` and
``SettledWithPermit`` logs, for ``farthing.agents.upto.resolve_upto`` when
the seller never said.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

import requests
from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from web3.exceptions import TransactionNotFound

from farthing.paywall.schemes.calldata import arg_types
from farthing.paywall.schemes.upto.contract import (
    PERMIT2_ADDRESS,
    PERMIT2_SIGNATURES,
    PROXY_SIGNATURES,
    UPTO_PROXY_ADDRESS,
)
from farthing.wallet.abi_words import keccak
from farthing.wallet.address import checksum
from farthing.wallet.chain import TRANSFER_TOPIC, Call, Chain
from farthing.wallet.errors import ChainError

__all__ = [
    "PermitSettlement",
    "find_settlement",
    "nonce_used",
    "permit_nonce",
    "settlement_in",
]

# The proxy's events, each emitted once per settlement it makes.
_SETTLED_TOPICS: Final = tuple(
    "0x" + keccak(text.encode()).hex() for text in ("Settled()", "SettledWithPermit()")
)
# Argument positions of the permit, the amount, the owner and the witness in each entry point.
_ENTRY_POINTS: Final = {
    keccak(PROXY_SIGNATURES["settle"].encode())[:4]: (arg_types(PROXY_SIGNATURES["settle"]), 0),
    keccak(PROXY_SIGNATURES["settleWithPermit"].encode())[:4]: (
        arg_types(PROXY_SIGNATURES["settleWithPermit"]),
        1,
    ),
}
_NONCE_BITMAP: Final = keccak(PERMIT2_SIGNATURES["nonceBitmap"].encode())[:4]


def permit_nonce(payment_id: int, payer: str) -> int:
    """The Permit2 nonce of an ``upto`` payment: a function of its id, so a retry signs the same one."""
    digest = hashlib.sha256(
        b"farthing.agents.upto-nonce:" + payment_id.to_bytes(16, "big") + bytes.fromhex(payer[2:])
    ).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class PermitSettlement:
    """One settlement of one permit, as the chain shows it."""

    tx_hash: str
    block_number: int
    amount: int  # what the token's Transfer logs moved from the payer to ``pay_to``
    pay_to: str  # the witness's payee, as settled
    moved_elsewhere: int  # anything the same transaction moved from the payer to anyone else


def nonce_used(chain: Chain, owner: str, nonce: int) -> bool:
    """Permit2's bitmap: True once ``nonce`` of ``owner`` is spent (settled or invalidated)."""
    data = (
        _NONCE_BITMAP
        + bytes(12)
        + bytes.fromhex(checksum(owner)[2:])
        + (nonce >> 8).to_bytes(32, "big")
    )
    result = chain.call(Call(PERMIT2_ADDRESS, data))
    if not result.ok or len(result.return_data) != 32:
        raise ChainError("Permit2 has no nonceBitmap here (is it deployed?)")
    word = int.from_bytes(result.return_data, "big")
    return bool(word >> (nonce & 0xFF) & 1)


def settlement_in(
    chain: Chain, tx_hash: str, *, owner: str, nonce: int, token: str
) -> PermitSettlement | str:
    """The settlement of this permit in ``tx_hash``, or why that transaction is not one.

    Reasons: ``settlement_not_found`` (no such mined transaction),
    ``settlement_failed`` (it reverted), ``settlement_not_this_permit`` (not
    the proxy's entry point spending this owner's nonce of this token).
    ``ChainError`` when the chain does not answer.
    """
    if not (isinstance(tx_hash, str) and len(tx_hash) == 66 and tx_hash.startswith("0x")):
        return "settlement_not_found"
    try:
        bytes.fromhex(tx_hash[2:])
    except ValueError:
        return "settlement_not_found"
    w3 = chain.w3
    try:
        receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        tx = w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return "settlement_not_found"
    except (requests.RequestException, OSError) as exc:
        raise ChainError(f"the chain did not answer: {type(exc).__name__}") from None
    if receipt is None or tx is None:
        return "settlement_not_found"
    if int(receipt["status"]) != 1:
        return "settlement_failed"
    called = _settle_args(tx.get("to"), bytes(tx.get("input") or b""))
    if called is None:
        return "settlement_not_this_permit"
    permit_token, permit_nonce_, settled_owner, witness_to = called
    if (
        settled_owner.lower() != owner.lower()
        or permit_nonce_ != nonce
        or permit_token.lower() != token.lower()
    ):
        return "settlement_not_this_permit"
    to_payee = elsewhere = 0
    for log in receipt["logs"]:
        topics = [bytes(t) for t in log["topics"]]
        if str(log["address"]).lower() != token.lower() or len(topics) != 3:
            continue
        if topics[0] != TRANSFER_TOPIC or "0x" + topics[1][-20:].hex() != owner.lower():
            continue
        value = int.from_bytes(bytes(log["data"]), "big")
        if "0x" + topics[2][-20:].hex() == witness_to.lower():
            to_payee += value
        else:
            elsewhere += value
    return PermitSettlement(
        tx_hash=tx_hash.lower(),
        block_number=int(receipt["blockNumber"]),
        amount=to_payee,
        pay_to=checksum(witness_to),
        moved_elsewhere=elsewhere,
    )


def find_settlement(
    chain: Chain, *, owner: str, nonce: int, token: str, from_block: int
) -> PermitSettlement | None:
    """The settlement that spent this permit, among the proxy's logs since ``from_block``."""
    seen: set[str] = set()
    for log in chain.logs(UPTO_PROXY_ADDRESS, [list(_SETTLED_TOPICS)], from_block):
        if log.tx_hash in seen:
            continue
        seen.add(log.tx_hash)
        found = settlement_in(chain, log.tx_hash, owner=owner, nonce=nonce, token=token)
        if isinstance(found, PermitSettlement):
            return found
    return None


def _settle_args(to: Any, data: bytes) -> tuple[str, int, str, str] | None:
    """(token, nonce, owner, witness.to) of a call of the proxy's settle entry points, or None."""
    if not isinstance(to, str) or to.lower() != UPTO_PROXY_ADDRESS.lower() or len(data) < 4:
        return None
    entry = _ENTRY_POINTS.get(data[:4])
    if entry is None:
        return None
    types, first = entry
    try:
        args = abi_decode(types, data[4:])
    except (DecodingError, ValueError, OverflowError):
        return None
    (permit_token, _ceiling), nonce, _deadline = args[first]
    owner, witness = args[first + 2], args[first + 3]
    return str(permit_token), int(nonce), str(owner), str(witness[0])
