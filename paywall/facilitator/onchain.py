"""What the chain shows of an ``exact`` settlement: its outcome, receipt and logs, an outage.

:class:`~farthing.paywall.facilitator.local.LocalFacilitator` resolves a
pending or repeated settlement from here: the receipt of the transaction it
sent (:func:`receipt_of`, :func:`receipt_logs`), whether the node still holds it
unmined (:func:`waiting`), or the token's ``AuthorizationUsed`` log of the
nonce (:func:`find_use`); what a sent transaction did is
:func:`settle_outcome` (paid, pending or failed, with the token's revert as
the reason). A transaction counts only if it moved the price from the payer
to the payee (:func:`moved`; its settlement :func:`paid_by`). An RPC that does not answer is an outage
(:func:`chain_outage`), never a payment outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, cast

import requests
from eth_utils.address import to_checksum_address
from web3.exceptions import TransactionNotFound

from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.wire import PaymentRequirements, SettleResult
from farthing.wallet.chain import TRANSFER_TOPIC, Chain, LogEntry, TxResult
from farthing.wallet.errors import ChainUnavailableError
from farthing.wallet.token import AUTHORIZATION_USED_TOPIC

__all__ = [
    "chain_outage",
    "failed",
    "find_use",
    "moved",
    "paid_by",
    "receipt_logs",
    "receipt_of",
    "settle_outcome",
    "waiting",
]


# Token revert reasons (farthing.wallet.revert) as payment reasons.
_SETTLE_REASONS: Final = {
    "authorization_used_or_canceled": "nonce_already_used",
    "authorization_expired": "authorization_expired",
    "authorization_not_yet_valid": "authorization_not_yet_valid",
    "invalid_signature": "invalid_signature",
    "insufficient_balance": "insufficient_balance",
}


def settle_outcome(tx: TxResult, requirements: PaymentRequirements, payer: str) -> SettleResult:
    """What a sent ``transferWithAuthorization`` did: paid, pending (no receipt yet) or failed."""
    network = requirements.network
    if tx.reason == "receipt_timeout":
        return SettleResult(
            False,
            network,
            tx.tx_hash or "",
            payer,
            requirements.amount,
            "settlement_pending",
            "the settlement was sent but not yet mined; retry with the same payment",
            pending=True,
        )
    if not tx.ok:
        reason = _SETTLE_REASONS.get(tx.reason or "", "transaction_failed")
        return failed(network, payer, reason, tx.revert_message or tx.reason)
    if not moved(tx.logs, requirements, payer):
        return failed(
            network, payer, "transfer_event_mismatch", "the transaction did not move the price"
        )
    return SettleResult(
        True,
        network,
        tx.tx_hash or "",
        payer,
        requirements.amount,
        block_number=tx.block_number,
    )


def failed(network: str, payer: str, reason: str, message: str | None) -> SettleResult:
    """A settlement that moved nothing, with its snake_case reason."""
    return SettleResult(False, network, "", payer, None, reason, message)


def find_use(
    chain: Chain,
    requirements: PaymentRequirements,
    payer: str,
    nonce: bytes,
    *,
    lookback_blocks: int,
) -> SettleResult | None:
    """The settlement that used ``nonce`` and paid ``requirements``, from the token's logs."""
    w3 = chain.w3
    latest = int(w3.eth.block_number)
    logs = w3.eth.get_logs(
        cast(
            Any,
            {
                "address": requirements.asset,
                "fromBlock": max(0, latest - lookback_blocks),
                "toBlock": latest,
                "topics": [
                    "0x" + AUTHORIZATION_USED_TOPIC.hex(),
                    "0x" + bytes(12).hex() + payer[2:].lower(),
                    "0x" + nonce.hex(),
                ],
            },
        )
    )
    for log in logs:
        tx_hash = "0x" + bytes(log["transactionHash"]).hex()
        found = receipt_of(w3, tx_hash)
        paid = None if found is None else paid_by(found, tx_hash, requirements, payer)
        if paid is not None:
            return paid
    return None


def paid_by(
    receipt: Any, tx_hash: str, requirements: PaymentRequirements, payer: str
) -> SettleResult | None:
    """The settlement ``receipt`` shows if its logs moved the price from ``payer``, else None."""
    if not moved(receipt_logs(receipt, tx_hash), requirements, payer):
        return None
    return SettleResult(
        True,
        requirements.network,
        tx_hash,
        payer,
        requirements.amount,
        block_number=int(receipt["blockNumber"]),
    )


def moved(
    logs: tuple[LogEntry, ...] | list[LogEntry], requirements: PaymentRequirements, payer: str
) -> bool:
    """True if ``logs`` hold the token's Transfer of the price from ``payer`` to the payee."""
    for log in logs:
        if log.address != requirements.asset or len(log.topics) != 3:
            continue
        if log.topics[0] != TRANSFER_TOPIC:
            continue
        sender = "0x" + log.topics[1][-20:].hex()
        receiver = "0x" + log.topics[2][-20:].hex()
        if (
            sender == payer.lower()
            and receiver == requirements.pay_to.lower()
            and int.from_bytes(log.data, "big") == requirements.amount
        ):
            return True
    return False


def receipt_of(w3: Any, tx_hash: str) -> Any:
    """The receipt of ``tx_hash``, or None while it is not mined (or unknown)."""
    try:
        return w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        return None


def waiting(w3: Any, tx_hash: str) -> bool:
    """True if the node knows ``tx_hash`` but has not mined it."""
    try:
        tx = w3.eth.get_transaction(tx_hash)
    except TransactionNotFound:
        return False
    return tx.get("blockNumber") is None


def receipt_logs(found: Any, tx_hash: str) -> list[LogEntry]:
    """The logs of a receipt as the wallet's ``LogEntry`` values."""
    return [
        LogEntry(
            address=to_checksum_address(log["address"]),
            topics=tuple(bytes(t) for t in log["topics"]),
            data=bytes(log["data"]),
            log_index=int(log["logIndex"]),
            block_number=int(log["blockNumber"]),
            tx_hash=tx_hash,
        )
        for log in found["logs"]
    ]


@contextmanager
def chain_outage(chain: Chain) -> Iterator[None]:
    """An RPC that does not answer is an outage (503), never a payment outcome."""
    try:
        yield
    except ChainUnavailableError as exc:
        raise FacilitatorUnavailableError(str(exc)) from None
    except (requests.RequestException, OSError):
        where = chain.rpc_url or "the chain"
        raise FacilitatorUnavailableError(f"the chain RPC at {where} did not answer") from None
