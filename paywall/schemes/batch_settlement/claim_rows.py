"""One claim row per channel, and the simulation that keeps one bad row from blocking a batch.

``claimWithSignature`` applies its rows in one transaction: one row that
reverts (``ClaimExceedsBalance`` after a payer's withdrawal took the money a
voucher was charged against, ``InvalidSignature`` from a damaged row) reverts
them all, every tick, and every other channel's earnings sit unclaimed while
their payers' withdrawals run out the clock (issue 17, finding 1). So:

- a row never claims more than the escrow holds: :func:`claim_total` is the
  charged total capped at the channel's mirrored balance (what was charged
  above it is a shortfall, reported by the claimer and by reconciliation as
  ``charged_above_balance``; a later top-up makes it claimable again);
- :func:`simulate_claims` runs each row alone (``eth_call`` of a one-row
  ``claimWithSignature``, signed like the real one) before the batch is
  built, drops a row that reverts and reports it with the contract's error,
  and the rest are claimed together.
"""

from __future__ import annotations

from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow, VoucherClaim
from farthing.paywall.schemes.batch_settlement.state import ChannelRecord
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    ClaimEntry,
    custom_error_name,
    sign_claim_batch,
)
from farthing.wallet.chain import Call
from farthing.wallet.errors import WalletError
from farthing.wallet.signer import Signer

__all__ = ["claim_row", "claim_total", "simulate_claims"]


def claim_total(record: ChannelRecord) -> int:
    """The cumulative total a claim records: what was charged, at most what the escrow holds."""
    return min(record.charged, record.balance, record.signed_max)


def claim_row(record: ChannelRecord) -> VoucherClaim:
    """The channel's row in ``claim``/``claimWithSignature``: its highest voucher and :func:`claim_total`."""
    return VoucherClaim(
        record.config, record.signed_max, record.signature or b"", claim_total(record)
    )


def simulate_claims(
    escrow: ChannelEscrow, domain: ChannelDomain, authorizer: Signer, rows: list[ChannelRecord]
) -> tuple[list[ChannelRecord], list[str]]:
    """``(rows whose claim runs alone, one failure line per row dropped)``."""
    kept: list[ChannelRecord] = []
    failures: list[str] = []
    for record in rows:
        cid = "0x" + record.channel_id.hex()
        entry = ClaimEntry(record.channel_id, record.signed_max, claim_total(record))
        signature = sign_claim_batch(authorizer, domain, [entry])
        data = escrow.encode_claim_with_signature([claim_row(record)], signature)
        try:
            result = escrow.chain.call(Call(escrow.address, data))
        except WalletError as exc:
            failures.append(f"claim {cid}: could not simulate it: {exc}")
            continue
        if result.ok:
            kept.append(record)
            continue
        why = custom_error_name(result.revert_message) or result.reason or "reverted"
        failures.append(f"claim {cid}: dropped from the batch, it reverts alone ({why})")
    return kept, failures
