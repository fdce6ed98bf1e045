"""What the chain shows of one ``upto`` permit: unused, or spent by which settlement, moving how much.

The seller's payment row of an ``upto`` payment (``farthing.paywall.records``)
is keyed by the permit's owner and Permit2 nonce; when its settlement's
outcome was not known (a receipt timeout, a process that died), it is
decided here from the chain alone, never from EIP-3009 state (an ``upto``
nonce is Permit2's):

* :func:`settlement_in` reads one transaction and accepts it only as a
  successful call of the x402UptoPermit2Proxy's ``settle`` or
  ``settleWithPermit`` spending *this* permit (owner, nonce, token); the
  amount is what the token's ``Transfer`` logs in it moved from the owner to
  the witness's payee;
* :func:`nonce_used` reads Permit2's nonce bitmap (spent: settled, or
  invalidated by its owner);
* :func:`find_settlement` looks for the settlement among the proxy's
  ``Settled`` and ``SettledWithPermit`` logs;
* :func:`permit_outcome` puts them together for a row: the named
  transaction's receipt when there is one, else the bitmap and the logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from web3.exceptions import TransactionNotFound

from farthing.paywall.schemes.calldata import arg_types, encode_call
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
    "PermitOutcome",
    "PermitSettlement",
    "find_settlement",
    "nonce_used",
    "permit_outcome",
    "settlement_in",
]

# The proxy's events, one per settlement it makes.
_SETTLED_TOPICS: Final = tuple(
    "0x" + keccak(text.encode()).hex() for text in ("Settled()", "SettledWithPermit()")
)
# Each entry point's argument types and the position of its Permit2 permit.
_ENTRY_POINTS: Final = {
    keccak(PROXY_SIGNATURES[name].encode())[:4]: (arg_types(PROXY_SIGNATURES[name]), first)
    for name, first in (("settle", 0), ("settleWithPermit", 1))
}
_TX_HASH_CHARS: Final = 66


@dataclass(frozen=True, slots=True)
class PermitSettlement:
    """One settlement of one permit, as the chain shows it."""

    tx_hash: str
    block_number: int
    amount: int  # what the token's Transfer logs moved from the owner to ``pay_to``
    pay_to: str  # the witness's payee
    moved_elsewhere: int = 0  # anything the same transaction moved from the owner to anyone else


@dataclass(frozen=True, slots=True)
class PermitOutcome:
    """A permit's state: ``settled`` (with its settlement), ``unused``, ``in_flight``
    (the named transaction is not mined and the nonce is unused) or ``used_elsewhere``
    (the nonce is spent and no settlement of it to the payee is found)."""

    state: Literal["settled", "unused", "in_flight", "used_elsewhere"]
    settlement: PermitSettlement | None = None


def nonce_used(chain: Chain, owner: str, nonce: int) -> bool:
    """Permit2's ``nonceBitmap``: True once ``nonce`` of ``owner`` is spent."""
    signature = PERMIT2_SIGNATURES["nonceBitmap"]
    data = encode_call(signature, arg_types(signature), [checksum(owner), nonce >> 8])
    result = chain.call(Call(PERMIT2_ADDRESS, data))
    if not result.ok or len(result.return_data) != 32:
        raise ChainError("Permit2 did not answer nonceBitmap() (is it deployed?)")
    word = int.from_bytes(result.return_data, "big")
    return bool(word >> (nonce & 0xFF) & 1)


def _receipt_and_tx(chain: Chain, tx_hash: str) -> tuple[Any, Any] | None:
    """The mined transaction's receipt and body, or None (unknown, or not mined yet)."""
    if not (isinstance(tx_hash, str) and len(tx_hash) == _TX_HASH_CHARS and tx_hash[:2] == "0x"):
        return None
    try:
        bytes.fromhex(tx_hash[2:])
    except ValueError:
        return None
    w3 = chain.w3
    try:
        receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        tx = w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return None
    if receipt is None or tx is None:
        return None
    return receipt, tx


def settlement_in(
    chain: Chain, tx_hash: str, *, owner: str, nonce: int, token: str
) -> PermitSettlement | str:
    """The settlement of this permit in ``tx_hash``, or why that transaction is not one.

    Reasons: ``settlement_not_found`` (no such mined transaction),
    ``settlement_failed`` (it reverted), ``settlement_not_this_permit``.
    """
    found = _receipt_and_tx(chain, tx_hash)
    if found is None:
        return "settlement_not_found"
    receipt, tx = found
    if int(receipt["status"]) != 1:
        return "settlement_failed"
    called = _settle_args(tx.get("to"), bytes(tx.get("input") or b""))
    if called is None:
        return "settlement_not_this_permit"
    permit_token, permit_nonce, settled_owner, witness_to = called
    if (
        settled_owner.lower() != owner.lower()
        or permit_nonce != nonce
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


def permit_outcome(
    chain: Chain,
    *,
    owner: str,
    nonce: int,
    token: str,
    pay_to: str,
    tx_hash: str | None,
    lookback_blocks: int,
) -> PermitOutcome:
    """What became of this permit; a settlement counts only if it paid ``pay_to``.

    The receipt of ``tx_hash`` first (the settlement the row names); else,
    with the nonce spent, the proxy's logs of the last ``lookback_blocks``.
    ``ChainError`` when the chain does not answer.
    """
    named: PermitSettlement | str = "settlement_not_found"
    if tx_hash:
        named = settlement_in(chain, tx_hash, owner=owner, nonce=nonce, token=token)
        if isinstance(named, PermitSettlement) and named.pay_to.lower() == pay_to.lower():
            return PermitOutcome("settled", named)
    if not nonce_used(chain, owner, nonce):
        in_flight = named == "settlement_not_found" and tx_hash and _pooled(chain, tx_hash)
        return PermitOutcome("in_flight" if in_flight else "unused")
    start = max(0, chain.block_number() - lookback_blocks)
    found = find_settlement(chain, owner=owner, nonce=nonce, token=token, from_block=start)
    if found is not None and found.pay_to.lower() == pay_to.lower():
        return PermitOutcome("settled", found)
    return PermitOutcome("used_elsewhere")


def _pooled(chain: Chain, tx_hash: str) -> bool:
    """Whether the node knows ``tx_hash`` (in its pool, not mined): it may still spend the nonce."""
    try:
        return chain.w3.eth.get_transaction(tx_hash) is not None  # type: ignore[arg-type]
    except TransactionNotFound:
        return False


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
