"""A retry of an ``upto`` payment nobody is finishing: taken over, decided by the chain, delivered once.

An ``upto`` payment's row is left open when its settlement's receipt did not
come in time (*pending*, the transaction perhaps still in the node's pool) or
when the process settling it died (*claimed* past its lease, or *settled* but
never delivered). Its permit may have moved money through Permit2 all the
same, so the payer's retry with the same header is never refused for it.
:func:`resume_upto` (``farthing.paywall.edge.upto.UptoPaidPath`` calls it,
as ``ExactPaidPath._resume_pending`` does for ``exact``):

1. only the payer's own signed permit for the row's terms (ceiling, payee)
   may collect: the key (payer, Permit2 nonce) is public on chain;
2. the row is taken over with one compare-and-swap (a live owner's is never
   touched); the loser is told to retry or that the permit is spent;
3. a row already settled is delivered; otherwise the chain decides
   (``farthing.paywall.facilitator.resolve.resolve_upto``: the named
   settlement's receipt, else Permit2's nonce bitmap and the proxy's logs):
   *settled* → recorded at what moved (the charge, never the ceiling), booked
   once, delivered; *in flight* → 503, retry; *unused past the deadline* →
   expired, 402; *spent with no settlement to the payee* → failed, 402;
   *unused* → served and settled afresh (Permit2 spends a nonce once, so
   an earlier owner's transaction landing meanwhile makes ours revert, and
   :func:`settled_elsewhere` then finds that one);
4. the buffered answer died with its request: the handler runs again (as
   ``exact``'s resume does), its own charge ignored, and the answer goes out
   with the ``PAYMENT-RESPONSE`` of what was settled.

With a remote facilitator the chain is not ours to read. A row that names
no transaction is put to the facilitator's verify: a permit it finds still
good (the nonce unspent on chain, no settlement of it in its journal, the
deadline ahead) moved nothing, and is served and settled afresh (should a
lost settlement land first after all, Permit2 lets one of the two move money
and ours is refused, so the answer is held back and the row pending). Any
other row stays pending (503) for a sweep with a local facilitator.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import anyio

from farthing.paywall.edge.asgi import (
    Send,
    in_thread,
    run_buffered,
    send_buffered,
    send_unavailable,
)
from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.facilitator.resolve import resolve_upto, upto_settle_result
from farthing.paywall.records.payments import PaymentKey, PaymentRecord, PaymentState
from farthing.paywall.schemes.signatures import check_signature
from farthing.paywall.schemes.upto.checks import signature_refusal
from farthing.paywall.schemes.upto.facilitator import UptoFacilitator
from farthing.paywall.schemes.upto.types import ERR_NONCE_USED
from farthing.paywall.wire import PAYMENT_RESPONSE_HEADER, SettleResult
from farthing.wallet.chain import Chain

if TYPE_CHECKING:
    from farthing.paywall.edge.challenge import Priced
    from farthing.paywall.edge.upto import UptoPaidPath, UsageFunction
    from farthing.paywall.schemes.upto.wire import UptoPayment

__all__ = ["resume_upto", "settled_elsewhere"]

_RETRY_SAME_HEADER: Final = (
    "The payment was sent to the chain but its outcome is not known yet. Retry with the "
    "same payment header: it will not be charged twice. Do not sign a new payment."
)


def _chain(path: UptoPaidPath) -> Chain | None:
    """The chain the facilitator settles on, when it is ours to read (a local facilitator)."""
    facilitator: Any = path.facilitator
    if isinstance(facilitator, (LocalFacilitator, UptoFacilitator)):
        chain: Chain = facilitator.chain
        return chain
    return None


async def resume_upto(
    path: UptoPaidPath,
    scope: dict[str, Any],
    receive: Any,
    send: Send,
    priced: Priced,
    payment: UptoPayment,
    known: PaymentRecord,
    usage: UsageFunction | None,
) -> None:
    """Finish the open ``upto`` payment ``known`` for the payer's retry; see the module doc."""
    auth, key = payment.authorization, known.key
    if (
        known.scheme != "upto"
        or auth.amount != known.amount
        or auth.to.lower() != known.pay_to.lower()
    ):
        await path.challenger.send_402(
            send, priced, "nonce_already_used", "This permit paid for something else."
        )
        return
    chain = _chain(path)
    if not await _payers_signature(payment, priced, chain):
        await path.challenger.send_402(
            send, priced, "invalid_signature", "The signature does not verify."
        )
        return
    claim = await in_thread(path.store.take_over, key, lease_s=path.claim_lease_s)
    if not claim.won or claim.existing is None:
        await path._send_lost(send, priced, claim.existing)
        return
    record, owner = claim.existing, claim.owner
    if record.state == PaymentState.SETTLED:
        settled = SettleResult(
            True, key.network, record.tx_hash or "", key.payer, record.charge,
            block_number=record.block_number,
        )  # fmt: skip
        await _deliver(path, scope, receive, send, priced, payment, record, owner, settled)
        return
    if chain is None:
        # The chain is the remote facilitator's to read. If it finds the permit
        # still good (its nonce unspent on chain, no settlement of it in its
        # journal, the deadline ahead), nothing moved: serve and settle afresh.
        if await _still_good(path, priced, payment, key, owner, record):
            await path._serve_claimed(scope, receive, send, priced, payment, key, owner, usage)
            return
        await in_thread(
            path.store.mark_pending, key, owner,
            reason=record.reason or "owner_lost", tx_hash=record.tx_hash,
        )  # fmt: skip
        await send_unavailable(send, "settlement_pending", _RETRY_SAME_HEADER)
        return
    try:
        outcome = await in_thread(resolve_upto, chain, record)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await in_thread(
                path.store.mark_pending, key, owner,
                reason="settlement_unknown", tx_hash=record.tx_hash,
            )  # fmt: skip
        raise
    settled_result = upto_settle_result(record, outcome)
    if settled_result is not None:
        marked = await in_thread(
            path.store.mark_settled, key, owner,
            tx_hash=settled_result.transaction, block_number=settled_result.block_number,
            amount=settled_result.amount,
        )  # fmt: skip
        if not marked:
            await send_unavailable(send, "settlement_pending", _RETRY_SAME_HEADER)
            return
        await _deliver(path, scope, receive, send, priced, payment, record, owner, settled_result)
        return
    if outcome.state == "used_elsewhere":
        reason = "permit2_nonce_used_elsewhere"
        await in_thread(path.store.mark_failed, key, owner, reason=reason)
        await path.challenger.send_402(send, priced, reason, "This permit was spent elsewhere.")
        return
    if outcome.state == "in_flight":
        await in_thread(
            path.store.mark_pending, key, owner,
            reason=record.reason or "settlement_pending", tx_hash=record.tx_hash,
        )  # fmt: skip
        await send_unavailable(send, "settlement_pending", _RETRY_SAME_HEADER)
        return
    if time.time() > record.valid_before:
        # Unused and past its deadline: Permit2 will never move it any more.
        await in_thread(path.store.mark_expired, key, owner)
        await path.challenger.send_402(
            send, priced, "authorization_expired", "The payment expired unused."
        )
        return
    # Unused on chain: serve and settle afresh under our new claim.
    await path._serve_claimed(scope, receive, send, priced, payment, key, owner, usage)


async def _still_good(
    path: UptoPaidPath,
    priced: Priced,
    payment: UptoPayment,
    key: PaymentKey,
    owner: str,
    record: PaymentRecord,
) -> bool:
    """Whether the facilitator verifies the permit as unspent; an outage leaves the row pending."""
    offer = priced.upto
    if offer is None or record.tx_hash:
        return False  # a transaction was named: only the chain's answer decides it
    try:
        verified = await path.facilitator.verify_upto(payment, offer)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await in_thread(
                path.store.mark_pending, key, owner,
                reason=record.reason or "owner_lost", tx_hash=None,
            )  # fmt: skip
        raise
    return verified.valid


async def settled_elsewhere(
    path: UptoPaidPath, key: PaymentKey, refused: SettleResult
) -> SettleResult:
    """A refused or reverted settle, decided by the chain: was the permit settled anyway?

    A settlement of this permit that paid the payee is this payment's (an
    earlier owner's transaction, mined meanwhile, made ours revert): it is
    returned, at what it moved. Spent with no such settlement: the refusal.
    Refused as already spent while the chain shows it unused (a transaction
    still in flight), or no chain to read: pending, resolved later, never
    refused. Any other refusal of an unused permit stands.
    """
    spent = refused.reason == ERR_NONCE_USED
    chain = _chain(path)
    record = await in_thread(path.store.get, key)
    if chain is None or record is None:
        return _pending(refused) if spent else refused
    try:
        outcome = await in_thread(resolve_upto, chain, record)
    except FacilitatorUnavailableError:
        return _pending(refused)
    settled = upto_settle_result(record, outcome)
    if settled is not None:
        return settled
    if outcome.state == "used_elsewhere" or not spent:
        return refused
    return _pending(refused)


def _pending(refused: SettleResult) -> SettleResult:
    return SettleResult(
        False, refused.network, "", refused.payer, refused.amount,
        reason="settlement_pending", message=refused.message, pending=True,
    )  # fmt: skip


async def _payers_signature(payment: UptoPayment, priced: Priced, chain: Chain | None) -> bool:
    """Whether the payer signed this permit: its key, or its contract wallet when the chain is ours."""
    offer = priced.upto
    assert offer is not None
    if signature_refusal(payment, offer.chain_id) is None:
        return True
    if chain is None:
        return False
    digest = payment.authorization.digest(offer.chain_id)
    check = await in_thread(check_signature, chain, payment.payer, digest, payment.signature)
    return check.valid and check.deployment is None


async def _deliver(
    path: UptoPaidPath,
    scope: dict[str, Any],
    receive: Any,
    send: Send,
    priced: Priced,
    payment: UptoPayment,
    record: PaymentRecord,
    owner: str,
    settled: SettleResult,
) -> None:
    """Book the settled charge (once), run the handler again, send its answer once."""
    charge = settled.amount if settled.amount is not None else record.charge
    if not record.booked:
        await path._book(priced, payment, record.key, settled, charge)
    try:
        buffered = await run_buffered(path.app, scope, receive, body_bytes_max=path.body_bytes_max)
    except BaseException:
        # Paid but not served: the payer's next retry gets it.
        with anyio.CancelScope(shield=True):
            await in_thread(path.store.give_back, record.key, owner)
        raise
    if not 200 <= buffered.status < 300:
        await in_thread(path.store.give_back, record.key, owner)
        await send_buffered(send, buffered, [])
        return
    await send_buffered(
        send, buffered, [(PAYMENT_RESPONSE_HEADER.encode(), settled.header().encode())]
    )
    await in_thread(path.store.mark_delivered, record.key, owner)
